"""The protect command's behaviour on real files, with tiny fake models (fast)."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecloak.cli import app
from tests.fakes import FixedDetector, landmarks_at, tiny_cloaker


@pytest.fixture(autouse=True)
def fake_models(monkeypatch):
    import facecloak.pretrained as pre

    def build(**kw):
        ck = tiny_cloaker(FixedDetector(default=[landmarks_at(150, 150)]), **({"mode": kw["config"].mode, "min_face": kw["config"].min_face, "seed": kw["config"].seed}))
        return ck

    monkeypatch.setattr(pre, "build_cloaker", build)


def make_photos(folder, n=2, size=(320, 300)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"p{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p, quality=95)
        paths.append(p)
    return paths


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(*args, input=None):
    return CliRunner().invoke(app, ["protect", *map(str, args)], input=input)


def test_protects_folder_and_reports(tmp_path):
    src = tmp_path / "in"
    make_photos(src)
    before = digest(src)
    r = run(src, "--out", tmp_path / "out", "--report", tmp_path / "r.json", "--quiet")
    assert r.exit_code == 0, r.output
    assert digest(src) == before  # originals untouched
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["ok"] == 2 and rep["errors"] == 0 and rep["faces"] == 2
    rec = rep["records"][0]
    assert rec["status"] == "ok" and rec["faces"][0]["identity"] is not None and len(rec["faces"][0]["landmarks"]) == 5
    for p in src.iterdir():
        a, b = Image.open(p), Image.open(tmp_path / "out" / p.name)
        assert a.size == b.size
        assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_bad_files_are_reported_and_batch_goes_on(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 1)
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.png").write_text("not an image")
    good = (src / "p0.jpg").read_bytes()
    (src / "trunc.jpg").write_bytes(good[: len(good) // 2])
    before = digest(src)
    r = run(src, "--out", tmp_path / "out", "--report", tmp_path / "r.json", "--quiet")
    assert r.exit_code == 1  # some files failed: scripts can tell
    rep = json.loads((tmp_path / "r.json").read_text())
    status = {json_name(x["input"]): x["status"] for x in rep["records"]}
    assert status == {"p0.jpg": "ok", "empty.jpg": "error", "text.png": "error", "trunc.jpg": "error"}
    msgs = " ".join(x["message"] for x in rep["records"] if x["status"] == "error")
    assert "empty.jpg" in msgs and "text.png" in msgs and "trunc.jpg" in msgs
    assert (tmp_path / "out" / "p0.jpg").exists() and not (tmp_path / "out" / "empty.jpg").exists()
    assert digest(src) == before


def json_name(p):
    from pathlib import Path

    return Path(p).name


def test_skip_existing_resumes_and_overwrite_redoes(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 2)
    out = tmp_path / "out"
    assert run(src, "--out", out, "--quiet").exit_code == 0
    (out / "p1.jpg").unlink()  # as if the run had been killed before p1
    stamp = (out / "p0.jpg").stat().st_mtime_ns
    r = run(src, "--out", out, "--report", tmp_path / "r.json", "--quiet")
    rep = json.loads((tmp_path / "r.json").read_text())
    assert r.exit_code == 0 and rep["skipped"] == 1 and rep["ok"] == 1
    assert (out / "p0.jpg").stat().st_mtime_ns == stamp and (out / "p1.jpg").exists()
    run(src, "--out", out, "--overwrite", "--report", tmp_path / "r.json", "--quiet")
    assert json.loads((tmp_path / "r.json").read_text())["ok"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_from_list_stdin_recursive_suffix_format(tmp_path):
    src = tmp_path / "in"
    make_photos(src / "a" / "b", 1)
    make_photos(src, 1)
    r = run("--from-list", "-", "--out", tmp_path / "out", "--format", "png", "--suffix", "_safe", "--quiet", input=f"{src / 'p0.jpg'}\n")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "p0_safe.png").exists()
    r = run(src, "-r", "--out", tmp_path / "out2", "--quiet")
    assert (tmp_path / "out2" / "a" / "b" / "p0.jpg").exists() and (tmp_path / "out2" / "p0.jpg").exists()


def test_output_inside_input_is_not_reprocessed(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 1)
    for _ in range(2):
        r = run(src, "-r", "--out", src / "safe", "--report", tmp_path / "r.json", "--quiet", "--overwrite")
        assert r.exit_code == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["images"] == 1 and not (src / "safe" / "safe").exists()


def test_unwritable_output_fails_cleanly(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run(src, "--out", blocker / "out", "--report", tmp_path / "r.json", "--quiet")
    assert r.exit_code == 1
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["errors"] == 1 and "out" in rep["records"][0]["message"]


def test_no_face_photo_is_copied_and_says_so(tmp_path, monkeypatch):
    import facecloak.pretrained as pre

    monkeypatch.setattr(pre, "build_cloaker", lambda **kw: tiny_cloaker(FixedDetector()))
    src = tmp_path / "in"
    src.mkdir()
    p = src / "p0.jpg"
    yy, xx = np.mgrid[0:300, 0:320]
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], 2).astype(np.uint8)).save(p, quality=95)
    r = run(p, "--out", tmp_path / "out", "--report", tmp_path / "r.json", "--quiet")
    rec = json.loads((tmp_path / "r.json").read_text())["records"][0]
    assert r.exit_code == 0 and rec["status"] == "no_face" and "no face" in rec["message"]
    assert np.abs(np.asarray(Image.open(tmp_path / "out" / "p0.jpg"), int) - np.asarray(Image.open(p), int)).mean() < 2


def test_gps_is_stripped_by_default_and_kept_on_request(tmp_path):
    src = tmp_path / "in"
    (p,) = make_photos(src, 1)
    im = Image.open(p)
    exif = Image.Exif()
    exif[0x0110] = "CameraModel"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    im.save(p, exif=exif)
    run(p, "--out", tmp_path / "o1", "--quiet")
    run(p, "--out", tmp_path / "o2", "--quiet", "--keep-metadata")
    assert not Image.open(tmp_path / "o1" / "p0.jpg").getexif().get_ifd(0x8825)
    assert Image.open(tmp_path / "o2" / "p0.jpg").getexif().get_ifd(0x8825)


def test_aligned_mode_rejects_non_crops(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 1, size=(256, 256))
    make_photos(tmp_path / "in2", 1, size=(300, 200))
    r = run(src / "p0.jpg", tmp_path / "in2" / "p0.jpg", "--aligned", "--out", tmp_path / "out", "--suffix", "_x", "--report", tmp_path / "r.json", "--quiet")
    rep = json.loads((tmp_path / "r.json").read_text())
    assert r.exit_code == 1 and rep["ok"] == 1 and "256x256" in [x for x in rep["records"] if x["status"] == "error"][0]["message"]


def test_usage_errors_exit_2(tmp_path):
    assert run("--out", tmp_path).exit_code == 2
    assert run(tmp_path, "--mode", "turbo").exit_code == 2
    r = run(tmp_path / "missing.jpg", "--out", tmp_path / "o", "--quiet")
    assert r.exit_code == 1
