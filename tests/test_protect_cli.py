"""The protect command's behaviour on real files, with tiny fake models (fast)."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecloak.cli import app
from tests.fakes import FakeRecognizer, FixedDetector, landmarks_at, tiny_cloaker


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


# ----------------------------------------------------------------------------- issue 12: say it


def two_face_cloaker(**kw):
    """One face the network protects (eye distance 60) and one below --min-face (eye distance 12)."""
    cfg = kw["config"]
    return tiny_cloaker(FixedDetector(default=[landmarks_at(100, 120), landmarks_at(250, 200, eye=12)]),
                        mode=cfg.mode, min_face=cfg.min_face, seed=cfg.seed)


def test_faces_below_min_face_have_their_own_status_count_and_strict_exit(tmp_path, monkeypatch):
    import facecloak.pretrained as pre

    monkeypatch.setattr(pre, "build_cloaker", two_face_cloaker)
    src = tmp_path / "in"
    make_photos(src, 1)
    r = run(src, "--out", tmp_path / "out", "--report", tmp_path / "r.json")
    rep = json.loads((tmp_path / "r.json").read_text())
    rec = rep["records"][0]
    assert r.exit_code == 0
    assert rec["status"] == "faces_unprotected" and "1 of 2" in rec["message"] and "--min-face" in rec["message"]
    assert rep["faces_unprotected"] == 1 and rep["ok"] == 0
    assert (rep["faces_found"], rep["faces_protected"], rep["faces_left_unprotected"]) == (2, 1, 1)
    assert rep["unprotected_reasons"] == {"too_small": 1}
    assert "2 found, 1 protected, 1 left unprotected (1 below --min-face)" in " ".join(r.output.split())
    assert run(src, "--out", tmp_path / "out2", "--strict", "--quiet").exit_code == 1
    # all faces too small: not "no_face" any more
    assert run(src, "--out", tmp_path / "out3", "--min-face", "100", "--report", tmp_path / "r3.json", "--quiet").exit_code == 0
    rep = json.loads((tmp_path / "r3.json").read_text())
    assert rep["records"][0]["status"] == "faces_unprotected" and rep["no_face"] == 0 and rep["unprotected_reasons"] == {"too_small": 2}


def test_summary_counts_faces_and_warns_that_fast_mode_without_verify_may_match(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 2)
    r = run(src, "--out", tmp_path / "out", "--report", tmp_path / "r.json")
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and "faces: 2 found, 2 protected, 0 left unprotected" in text
    assert "fast mode often leaves faces matchable" in text and "--mode strong --verify" in text and "--strength high" in text
    assert json.loads((tmp_path / "r.json").read_text())["caveat"].startswith("fast mode")
    r = run(src, "--out", tmp_path / "out2", "--verify")
    assert r.exit_code == 0 and "matchable" not in r.output  # --verify says per face instead


def test_verify_says_when_a_verifier_is_unavailable(tmp_path, monkeypatch):
    import facecloak.pretrained as pre

    def load(name, device="cpu"):
        if name == "dlib_resnet":
            raise ImportError("No module named 'dlib'")
        return FakeRecognizer()

    monkeypatch.setattr(pre, "load_recognizer", load)
    missing = {}
    got = pre.load_verifiers("cpu", missing=missing)
    assert set(got) == {"facenet_casia", "sface"} and "dlib" in missing["dlib_resnet"] and "facecloak[eval]" in missing["dlib_resnet"]

    def build(**kw):
        ck = tiny_cloaker(FixedDetector(default=[landmarks_at(150, 150)]))
        ck.verifiers = pre.load_verifiers("cpu", missing=(m := {}))
        ck.unavailable_verifiers = m
        return ck

    monkeypatch.setattr(pre, "build_cloaker", build)
    src = tmp_path / "in"
    make_photos(src, 1)
    for quiet in ([], ["--quiet"]):
        r = run(src, "--out", tmp_path / "out", "--verify", "--overwrite", "--report", tmp_path / "r.json", *quiet)
        assert r.exit_code == 0 and "dlib_resnet could not be loaded" in " ".join(r.output.split())
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["verify"] and rep["caveat"] is None and "dlib_resnet" in rep["warnings"][0]
    assert set(rep["records"][0]["faces"][0]["verify"]) == {"facenet_casia", "sface"}


def test_max_pixels_is_an_option(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 1)  # 320 x 300 = 96,000 pixels
    r = run(src, "--out", tmp_path / "o1", "--max-pixels", "50000", "--report", tmp_path / "r.json", "--quiet")
    rec = json.loads((tmp_path / "r.json").read_text())["records"][0]
    assert r.exit_code == 1 and rec["status"] == "error" and "--max-pixels" in rec["message"]
    assert run(src, "--out", tmp_path / "o2", "--max-pixels", "100000", "--quiet").exit_code == 0
    assert run(src, "--out", tmp_path / "o3", "--max-pixels", "0", "--quiet").exit_code == 0  # 0: no limit
    assert run(src, "--out", tmp_path / "o4", "--max-pixels", "-1", "--quiet").exit_code == 2


def test_usage_errors_are_found_before_any_work(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 1)
    cases = {
        "missing list": ["--from-list", tmp_path / "nope.txt"],
        "suffix with a folder": [src, "--suffix", "a/b"],
        "unknown device": [src, "--device", "foo"],
        "unknown format": [src, "--format", "tiff"],
    }
    for name, args in cases.items():
        r = run(*args, "--out", tmp_path / "out", "--quiet")
        assert r.exit_code == 2, (name, r.output)
        assert r.output.strip().startswith("error:") and "Traceback" not in r.output, name
        assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), name
    assert not (tmp_path / "out").exists()


def test_keep_metadata_output_carries_no_preview_of_the_face(tmp_path):
    import base64

    from tests.test_imageio import exif_with_previews, jpeg_bytes, xmp_with_previews

    src = tmp_path / "in"
    (p,) = make_photos(src, 1)
    rgb = np.asarray(Image.open(p))
    preview = jpeg_bytes(rgb[::8, ::8].copy())  # what a camera stores: a small copy of the photo
    Image.fromarray(rgb).save(p, exif=exif_with_previews(preview, preview), xmp=xmp_with_previews(base64.b64encode(preview).decode()))
    assert p.read_bytes().count(b"\xff\xd8\xff") == 3
    assert run(p, "--out", tmp_path / "out", "--keep-metadata", "--quiet").exit_code == 0
    data = (tmp_path / "out" / "p0.jpg").read_bytes()
    assert data.count(b"\xff\xd8\xff") == 1 and b"/9j/" not in data and b"Ann Keep" in data


def test_verify_runs_each_verifier_on_its_own_device():
    """A verifier whose weights live elsewhere than the crops (CUDA in real use) gets tensors on
    its device. Old code fed it the crops' device and every batch failed."""
    import torch

    from facecloak.cloak import Cloaker

    class Stub(torch.nn.Module):
        def __init__(self, device):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device=device))
            self.seen = []

        def forward(self, x):
            if x.device != self.w.device:
                raise RuntimeError(f"input on {x.device}, weights on {self.w.device}")
            self.seen.append(x.device)
            return torch.nn.functional.normalize(torch.ones(x.shape[0], 4), dim=1)  # results come back on the CPU

    devices = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])
    stubs = {f"stub_{d}": (Stub(d), 0.5) for d in devices}
    ck: Cloaker = tiny_cloaker(FixedDetector(default=[landmarks_at(150, 150)]))
    ck.verifiers = stubs
    img = np.random.default_rng(0).integers(0, 255, (300, 320, 3), dtype=np.uint8)
    res = ck.protect_images([img])[0]
    for name, (stub, _) in stubs.items():
        assert stub.seen and stub.seen[0].type == name.split("_")[1]
        assert res.faces[0].verify[name]["cos"] == 1.0 and res.faces[0].verify[name]["still_matches"]


def test_advice_for_still_matched_faces_climbs_one_step_at_a_time():
    from facecloak.protect import stronger_advice

    assert stronger_advice("fast", "medium") == "try --strength high, or --mode strong"
    assert stronger_advice("fast", "high") == "try --mode strong"
    # strong mode with --verify has already retried such faces with its strongest setting
    for strength in ("low", "medium", "high"):
        top = stronger_advice("strong", strength)
        assert "--mode strong" not in top and "--strength" not in top and "retry was not enough" in top
    assert stronger_advice("strong", "medium", retried=False) == "try --strength high"
    assert "--no-retry" in stronger_advice("strong", "high", retried=False)
