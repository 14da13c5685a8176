"""End to end: the shipped hiding network, real detector and recognizers, real photos."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecloak.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    src = tmp / "in"
    src.mkdir()
    for name in ("astronaut.jpg", "two_faces.jpg", "coffee.jpg"):
        shutil.copy(EXAMPLES / name, src / name)
    (src / "broken.jpg").write_bytes((EXAMPLES / "astronaut.jpg").read_bytes()[:5000])
    r = CliRunner().invoke(app, ["protect", str(src), "--out", str(tmp / "out"), "--verify", "--report", str(tmp / "r.json"),
                                 "--format", "png", "--quiet", "--device", "cpu"])
    return src, tmp / "out", json.loads((tmp / "r.json").read_text()), r


def test_statuses_and_exit_code(protected):
    _, _, rep, r = protected
    status = {Path(x["input"]).name: x["status"] for x in rep["records"]}
    assert status == {"astronaut.jpg": "ok", "two_faces.jpg": "ok", "coffee.jpg": "no_face", "broken.jpg": "error"}
    assert r.exit_code == 1  # the truncated file counts as a failure
    faces = {Path(x["input"]).name: len(x["faces"]) for x in rep["records"]}
    assert faces["astronaut.jpg"] == 1 and faces["two_faces.jpg"] == 2


def test_same_size_outside_unchanged_face_bounded(protected):
    src, out, rep, _ = protected
    for rec in rep["records"]:
        if rec["status"] != "ok":
            continue
        a = np.asarray(Image.open(rec["input"]).convert("RGB")).astype(int)
        b = np.asarray(Image.open(rec["output"]).convert("RGB")).astype(int)
        assert a.shape == b.shape
        changed = np.any(a != b, axis=2)
        inside = np.zeros_like(changed)
        for f in rec["faces"]:
            lm = np.array(f["landmarks"])
            eye = np.linalg.norm(lm[1] - lm[0])
            c = lm.mean(0)
            r = 3.5 * eye  # the canonical crop spans ~4 eye distances
            inside[max(0, int(c[1] - r)) : int(c[1] + r), max(0, int(c[0] - r)) : int(c[0] + r)] = True
            assert 25 < f["psnr"] < 60  # changed, by a bounded amount
        assert changed.any() and not (changed & ~inside).any()


def test_verify_figures_make_sense(protected):
    _, _, rep, _ = protected
    for rec in rep["records"]:
        for f in rec["faces"]:
            assert set(f["verify"]) >= {"facenet_casia", "sface"}
            for name, v in f["verify"].items():
                assert -1 <= v["cos"] <= 1 and v["still_matches"] == (v["cos"] >= v["threshold"])
                assert v["cos"] < 0.999  # the protected face is not the original


def test_different_fake_identity_per_face(protected):
    _, _, rep, _ = protected
    two = next(x for x in rep["records"] if x["input"].endswith("two_faces.jpg"))
    assert two["faces"][0]["identity"] != two["faces"][1]["identity"]
