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
