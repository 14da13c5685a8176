"""`facecloak eval` on a tiny LFW-layout fixture of real faces, with real recognizers."""
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facecloak.cli import app

FACES = Path(__file__).parent / "fixtures" / "zoo_arcface_sface_dcgan"


def lfw_fixture(root: Path) -> Path:
    """LFW layout: DIR/<Name>/<Name>_000N.jpg and pairs.txt (1 fold of 2 genuine + 2 impostor)."""
    lfw = root / "lfw"
    for name, files in {"Barack_Obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "Joe_Biden": ["biden.jpg"]}.items():
        (lfw / name).mkdir(parents=True)
        for i, f in enumerate(files, 1):
            shutil.copy(FACES / f, lfw / name / f"{name}_{i:04d}.jpg")
    (root / "pairs.txt").write_text(
        "1\t2\nBarack_Obama\t1\t2\nBarack_Obama\t1\t3\nBarack_Obama\t2\tJoe_Biden\t1\nBarack_Obama\t3\tJoe_Biden\t1\n"
    )
    return root


def test_lfw_benchmark_follows_pairs_txt(tmp_path, monkeypatch):
    monkeypatch.setenv("FACECLOAK_CACHE", str(tmp_path / "cache"))
    from facecloak.eval.benchmark import lfw_benchmark

    b = lfw_benchmark(lfw_fixture(tmp_path / "data"), n_people=200)
    assert len(b.crops) == 4 and not b.dropped
    assert [s for _, _, s in b.pairs] == [True, True, False, False]
    assert b.pairs[0] == ("Barack_Obama/Barack_Obama_0001", "Barack_Obama/Barack_Obama_0002", True)
    # only Obama has 3 images: one person per identification set, one image each
    assert [len(s) for s in b.id_sets] == [1, 1, 1] and len({k for s in b.id_sets for k in s}) == 3


@pytest.mark.slow
def test_eval_cli_writes_complete_report(tmp_path, monkeypatch):
    # models come from the normal cache; only crops/embeddings go to the temp cache
    import facecloak.zoo.registry as reg
    from facecloak.cache import cache_dir

    import facecloak.data.crops as crops_mod
    import facecloak.eval.impostors as imp

    real_cache = cache_dir()
    monkeypatch.setenv("FACECLOAK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(reg.ModelRecord, "cache_path", lambda self: real_cache / "models" / self.name / self.filename)
    # A small labelled "training split" for the FAR impostor set (named like data.crops.crop_all_faces
    # names them), and fewer fakes than the 100,000-pair minimum needs, to keep the test short.
    train = tmp_path / "train"
    train.mkdir()
    for i, f in enumerate(["obama.jpg", "biden.jpg"]):
        shutil.copy(FACES / f, train / f"{f[:-4]}__photo{i}_0.png")
    monkeypatch.setattr(crops_mod, "offline_crops", lambda split, device="cpu": train)
    monkeypatch.setattr(imp, "MIN_PAIRS", 300)
    full_set = imp.training_impostor_set
    monkeypatch.setattr(imp, "training_impostor_set", lambda fakes, n_fakes=0, seed=7: full_set(fakes, 0, seed))
    data = lfw_fixture(tmp_path / "data")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--benchmark", "lfw", "--data", str(data / "lfw"), "--out", str(out),
                                 "--methods", "facecloak_fast,blur,lgc", "--recognizers", "arcface_mbf,sface",
                                 "--steps-scale", "0.1", "--sweep", "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    kinds = ("asr", "asr_far", "asr_published", "asr_same", "asr_same_far", "asr_same_published")
    for rec in ("arcface_mbf", "sface"):
        t = rep["thresholds"][rec]
        assert set(t) >= {"best_accuracy", "far_1e-3", "published"} and t["impostor_pairs"] >= 300
        assert -1 < t["best_accuracy"] < 1 and -1 < t["far_1e-3"] < 1
    assert rep["thresholds"]["sface"]["published"] == 0.363 and rep["thresholds"]["arcface_mbf"]["published"] is None
    for m in ("original", "facecloak_fast", "blur", "lgc"):
        v = rep["methods"][m]
        for rec in ("arcface_mbf", "sface"):
            assert 0 <= v["asr"][rec] <= 1
            for k in kinds:
                assert v[k][rec] is None if (k.endswith("published") and rec == "arcface_mbf") else 0 <= v[k][rec] <= 1, (m, k, rec)
            assert set(v["robustness"]) == set(v["robustness_far"]) == {"median_blur", "gaussian_blur", "jpeg", "bit_depth"}
    for m in ("facecloak_fast", "blur", "lgc"):
        v = rep["methods"][m]
        assert 10 < v["quality"]["psnr"]["mean"] < 80 and 0 <= v["quality"]["lpips"]["mean"] < 1
    # The no-change row: every face matches its own photo, so same-photo ASR is 0 at every threshold.
    assert rep["methods"]["original"]["asr_same"]["sface"] == 0 == rep["methods"]["original"]["asr_same_far"]["arcface_mbf"]
    # End to end: the fixture photos protected as `protect` does and re-detected by dlib's HOG.
    for m in ("original", "facecloak_fast"):
        e = rep["methods"][m]["e2e"]
        assert e["detected"] == 1.0 and e["quality"]["n"] == rep["data"]["deidentified_faces"] == 3
        for k in kinds:
            assert e[k]["sface"] is not None and 0 <= e[k]["sface"] <= 1
    assert 0 < rep["methods"]["facecloak_fast"]["e2e"]["quality"]["lpips"]["mean"] < 0.5
    assert "e2e" not in rep["methods"]["blur"]  # baselines work on crops only
    # LGC attacks EN directly with eps 4/255: its PSNR stays high
    assert rep["methods"]["lgc"]["quality"]["psnr"]["mean"] > 35
    assert rep["original"]["threshold"]["arcface_mbf"] < 0.9
    assert rep["data"]["genuine_pairs"] == 2 and rep["config"]["methods"] == ["facecloak_fast", "blur", "lgc"]
    # --sweep: LGC over eps 1..7 and facecloak over strength; stronger LGC changes the face more
    sweep = [f"lgc_eps{e}" for e in range(1, 8)]
    assert set(sweep) <= set(rep["methods"]) and "facecloak_s0.5" in rep["methods"]
    psnrs = [rep["methods"][m]["quality"]["psnr"]["mean"] for m in sweep]
    assert psnrs[0] > psnrs[-1]
    assert rep["methods"]["facecloak_s0.5"]["quality"]["psnr"]["mean"] > rep["methods"]["facecloak_fast"]["quality"]["psnr"]["mean"]
    for f in ("report.md", "grid.png", "tradeoff.png", "cmc_sface.png"):
        assert (out / f).exists(), f
    md = (out / "report.md").read_text()
    assert "Table 8" in md and md.index("FAR = 1e-3") < md.index("paper protocol")
