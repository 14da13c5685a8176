"""Exit codes keep their contract (issue 12, case 5) and the bank is the user's own (case 7).

0 success; 1 a file failed; 2 usage error; 3 a model or weights file could not be loaded. Each
failure is one line on stderr, never a traceback. These run the real loaders on real files.
"""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from facecloak.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args, env=None):
    return CliRunner().invoke(app, [*map(str, args)], env=env)


@pytest.fixture
def photo(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(EXAMPLES / "astronaut.jpg", src / "astronaut.jpg")
    return src / "astronaut.jpg"


def one_line_error(r, code):
    assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    return lines[0]


def test_corrupt_weights_file_exits_3(tmp_path, photo):
    bad = tmp_path / "hn.safetensors"
    bad.write_bytes(b"\x00" * 64 + b"not a safetensors file")
    text = one_line_error(run("protect", photo, "--out", tmp_path / "out", "--weights", bad, "--device", "cpu", "--quiet"), 3)
    assert "--weights" in text and str(bad.name) in text
    assert not (tmp_path / "out").exists()


def test_unknown_hf_repo_offline_exits_3(tmp_path, photo):
    r = run("protect", photo, "--out", tmp_path / "out", "--hf-repo", "nobody-here/no-such-repo", "--device", "cpu", "--quiet",
            env={"HF_HUB_OFFLINE": "1"})
    assert "no-such-repo" in one_line_error(r, 3)


@pytest.mark.parametrize("content", ["garbage", "wrong_key", "wrong_shape", "nan"])
def test_unusable_bank_exits_3(tmp_path, photo, content):
    bank = tmp_path / "bank.safetensors"
    if content == "garbage":
        bank.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    else:
        t = {"wrong_key": {"feats": torch.randn(4, 512)}, "wrong_shape": {"features": torch.randn(4, 128)},
             "nan": {"features": torch.full((4, 512), float("nan"))}}[content]
        save_file(t, str(bank))
    text = one_line_error(run("protect", photo, "--out", tmp_path / "out", "--bank", bank, "--device", "cpu", "--quiet"), 3)
    assert "--bank" in text and "bank.safetensors" in text


def test_eval_unknown_recognizer_is_a_usage_error(tmp_path):
    r = run("eval", "--recognizers", "arcface_mbf,typo", "--out", tmp_path / "e", "--quiet", "--device", "cpu")
    assert "typo" in one_line_error(r, 2)
    assert not (tmp_path / "e").exists()


# ----------------------------------------------------------------------------- the bank


def test_build_bank_writes_to_the_user_cache_never_over_the_shipped_bank(tmp_path, monkeypatch):
    import facecloak.bank as bank_mod
    import facecloak.data.crops as crops
    import facecloak.zoo.arcface as arcface
    import facecloak.zoo.dcgan as dcgan
    from facecloak.zoo.hiding import BANK_FILE, bundled_dir

    shipped = bundled_dir() / BANK_FILE
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    monkeypatch.setenv("FACECLOAK_CACHE", str(tmp_path / "cache"))
    # the real generator and pool take minutes; the command's file handling is what is tested here
    from PIL import Image

    real = [tmp_path / f"real{i}.png" for i in range(2)]
    for p in real:
        Image.new("RGB", (256, 256), (120, 90, 80)).save(p)
    monkeypatch.setattr(crops, "real_training_pool", lambda *a, **k: real)
    monkeypatch.setattr(arcface, "load_arcface", lambda *a, **k: None)
    monkeypatch.setattr(dcgan, "load_dcgan", lambda *a, **k: None)
    feats = torch.nn.functional.normalize(torch.randn(5, 512), dim=1)
    monkeypatch.setattr(bank_mod, "build_bank", lambda *a, **k: (feats, torch.arange(5), {"kept": 5, "real_faces": 2}))

    r = run("data", "build-bank", "--candidates", "8", "--source", "dcgan")
    assert r.exit_code == 0, r.output
    made = tmp_path / "cache" / "banks" / "fake_bank.safetensors"
    assert made.is_file() and "--bank" in r.output
    r = run("data", "build-bank", "--out", shipped)
    assert r.exit_code == 2 and "shipped" in r.output
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before

    from facecloak.pretrained import load_fake_bank

    assert torch.allclose(load_fake_bank(made), feats)  # a user's bank: checked for shape, not for our hash
    assert load_fake_bank().shape[1] == 512  # the shipped one still passes its hash check


@pytest.mark.slow
def test_protect_uses_the_users_bank(tmp_path, photo):
    bank = tmp_path / "mine.safetensors"
    feats = torch.nn.functional.normalize(torch.randn(7, 512, generator=torch.Generator().manual_seed(0)), dim=1)
    save_file({"features": feats}, str(bank))
    r = run("protect", photo, "--out", tmp_path / "out", "--bank", bank, "--device", "cpu", "--quiet", "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    faces = json.loads((tmp_path / "r.json").read_text())["records"][0]["faces"]
    assert len(faces) == 1 and faces[0]["status"] == "protected" and 0 <= faces[0]["identity"] < 7
