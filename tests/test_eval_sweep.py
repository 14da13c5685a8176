"""`eval --sweep` covers only the requested methods; v0.1 weights (no work_size) still load."""
import json

import torch

from facecloak.eval.runner import EvalConfig, sweep_table


def test_sweep_covers_only_requested_methods():
    fast = sweep_table(EvalConfig(methods=("facecloak_fast",)))
    assert sorted(fast) == ["facecloak_s0.5", "facecloak_s0.75", "facecloak_s1.25", "facecloak_s1.5"]
    lgc = sweep_table(EvalConfig(methods=("lgc", "blur")))
    assert sorted(lgc) == [f"lgc_eps{e}" for e in range(1, 8)]
    both = sweep_table(EvalConfig(methods=("facecloak_fast", "lgc")))
    assert set(both) == set(fast) | set(lgc)
    # strong mode is not scaled; methods without a sweep add nothing
    assert sweep_table(EvalConfig(methods=("facecloak_strong", "blur", "mask"))) == {}


def test_sweep_strengths_pick_the_points(tmp_path):
    # --sweep-strengths traces fast mode at the strengths asked for, and refuses nonsense up front
    from typer.testing import CliRunner

    from facecloak.cli import app

    fine = sweep_table(EvalConfig(methods=("facecloak_fast",), sweep_strengths=(0.8, 0.85)))
    assert sorted(fine) == ["facecloak_s0.8", "facecloak_s0.85"]
    for bad in ("0.8,x", "0.8,-1"):
        r = CliRunner().invoke(app, ["eval", "--sweep", "--sweep-strengths", bad, "--out", str(tmp_path / "e"), "--device", "cpu"])
        assert r.exit_code == 2 and "--sweep-strengths" in r.output, r.output
        assert not (tmp_path / "e").exists()


def test_v01_config_without_work_size_loads_at_full_resolution(tmp_path):
    # v0.1's header config predates work_size; it must load as the full-256 network it was.
    from safetensors.torch import save_file

    from facecloak.models.hiding import HidingNet, HidingNetConfig, load_hiding_net

    cfg = {"width": 4, "feature_dim": 512, "size": 256, "max_delta": 0.12, "head_init_std": 0.01, "smooth_sigma": 1.0}
    net = HidingNet(HidingNetConfig(**cfg))
    path = tmp_path / "v01.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={"config": json.dumps(cfg)})
    loaded = load_hiding_net(path)
    assert loaded.config.work_size is None and loaded.config.max_delta == 0.12
    c, f = torch.rand(1, 3, 64, 64), torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    with torch.no_grad():
        assert torch.equal(loaded(c, f), net.eval()(c, f))


def test_report_names_the_weights_it_measured(tmp_path):
    # The shipped file may be replaced later; the report must still say which weights it measured.
    import hashlib

    from safetensors.torch import save_file

    from facecloak.eval.runner import weights_provenance
    from facecloak.models.hiding import HidingNet, HidingNetConfig, save_hiding_net

    hn, bank = tmp_path / "hn.safetensors", tmp_path / "bank.safetensors"
    save_hiding_net(HidingNet(HidingNetConfig(width=4, work_size=128)), hn, extra={"model_version": "9.9"})
    save_file({"features": torch.randn(7, 512)}, str(bank))
    p = weights_provenance(EvalConfig(weights=str(hn), bank=str(bank)))
    assert p["hiding_net"]["sha256"] == hashlib.sha256(hn.read_bytes()).hexdigest()
    assert p["hiding_net"]["model_version"] == "9.9" and p["hiding_net"]["config"]["work_size"] == 128
    assert p["bank"] == {"path": str(bank), "sha256": hashlib.sha256(bank.read_bytes()).hexdigest(), "fakes": 7}


def _fake_report(asr_at_1: float, weights: dict | None) -> dict:
    """A report.json with the keys plot_sweep reads; quality falls and ASR rises with s."""
    rows = {"original": (0.0, float("inf"), 0.05)}
    for s in (0.5, 0.75, 1.0, 1.25, 1.5):
        rows["facecloak_fast" if s == 1 else f"facecloak_s{s:g}"] = (0.04 * s, 40 - 8 * s, min(1.0, asr_at_1 * s))
    methods = {m: {"quality": {"lpips": {"mean": lp}, "psnr": {"mean": ps}, "ssim": {"mean": 1 - lp}},
                   "asr_far": {r: a for r in ("arcface_mbf", "facenet_casia", "sface", "dlib_resnet")}}
               for m, (lp, ps, a) in rows.items()}
    rep = {"methods": methods, "config": {"weights": None, "bank": None}, "data": {"deidentified_faces": 40, "genuine_pairs": 313},
           "thresholds": {"sface": {"far_1e-3": 0.47}}}
    if weights:
        rep["weights"] = weights
    return rep


def test_plot_sweep_writes_one_curve_per_version(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("plot_sweep", Path(__file__).parents[1] / "benchmarks" / "plot_sweep.py")
    ps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ps)
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_fake_report(0.5, None)))
    new.write_text(json.dumps(_fake_report(0.6, {"hiding_net": {"sha256": "ab" * 32}})))
    ps.main([f"v0.1={old}", f"v0.2={new}", "--out", str(tmp_path / "sweep")])
    out = json.loads((tmp_path / "sweep.json").read_text())["curves"]
    assert list(out) == ["v0.1", "v0.2"] and (tmp_path / "sweep.png").stat().st_size > 10_000
    pts = out["v0.2"]["points"]
    assert [p["s"] for p in pts] == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert pts[2]["asr_far"] == {"facenet_casia": 0.6, "sface": 0.6, "dlib_resnet": 0.6}  # s = 1 is facecloak_fast; no white box
    assert pts[0]["lpips"] == 0.02 and pts[4]["psnr"] == 28.0
    assert out["v0.2"]["sha256_12"] == "ab" * 6 and out["v0.1"]["weights"]["hiding_net"]["sha256"] is None
    assert out["v0.1"]["original_asr_far"]["sface"] == 0.05
    assert ps.folder_name("v0.1") == "v01" and ps.folder_name("v0.1 + bank v0.2") == "v01-bank-v02"
