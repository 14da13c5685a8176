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

    real_cache = cache_dir()
    monkeypatch.setenv("FACECLOAK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(reg.ModelRecord, "cache_path", lambda self: real_cache / "models" / self.name / self.filename)
    data = lfw_fixture(tmp_path / "data")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--benchmark", "lfw", "--data", str(data / "lfw"), "--out", str(out),
                                 "--methods", "facecloak_fast,blur,lgc", "--recognizers", "arcface_mbf,sface",
                                 "--steps-scale", "0.1", "--sweep", "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    for m in ("facecloak_fast", "blur", "lgc"):
        v = rep["methods"][m]
        assert 10 < v["quality"]["psnr"]["mean"] < 80 and 0 <= v["quality"]["lpips"]["mean"] < 1
        for rec in ("arcface_mbf", "sface"):
            assert 0 <= v["asr"][rec] <= 1
            assert set(v["robustness"]) == {"median_blur", "gaussian_blur", "jpeg", "bit_depth"}
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
    assert "Table 8" in (out / "report.md").read_text()
