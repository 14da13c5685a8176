"""A hash mismatch's advice must never destroy the only copy of a file (issue 12, case 7).

A cached download can be deleted and fetched again; a file shipped with facecloak (the hiding
network and the fake-identity bank in ``weights/``) cannot, so its error says to reinstall or
to pass one's own file instead. The shipped files are only read here, never written.
"""
import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facecloak.cli import app
from facecloak.zoo import registry
from facecloak.zoo.registry import HashMismatch, LocalSource, ModelNotAvailable, ModelRecord, UrlSource, get_record, sha256_file, verify

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WRONG = "0" * 64


def assert_shipped_advice(text: str) -> None:
    assert "Delete" not in text and "models fetch" not in text
    assert "ships with facecloak" in text and "do not delete it" in text
    assert "--force-reinstall" in text and "git checkout weights/" in text
    assert "--weights" in text and "--bank" in text


@pytest.mark.parametrize("name", ["hiding_net", "fake_identity_bank"])
def test_shipped_files_are_never_to_be_deleted(name):
    record = get_record(name)
    (shipped,) = [s.path for s in record.sources if isinstance(s, LocalSource)]
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    with pytest.raises(HashMismatch) as e:
        verify(replace(record, sha256=WRONG), shipped)  # as if the file had been modified
    assert_shipped_advice(str(e.value))
    assert str(shipped) in str(e.value) and "\n" not in str(e.value)
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before


def test_a_local_source_reached_through_another_path_is_still_shipped(tmp_path):
    real = tmp_path / "weights" / "w.safetensors"
    real.parent.mkdir()
    real.write_bytes(b"modified")
    (tmp_path / "link").symlink_to(real.parent)
    record = ModelRecord("mine", "hiding", "w.safetensors", WRONG, sources=(LocalSource(tmp_path / "link" / "w.safetensors"),))
    with pytest.raises(HashMismatch) as e:
        verify(record, real)
    assert_shipped_advice(str(e.value))


def test_a_cached_download_keeps_the_delete_and_fetch_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("FACECLOAK_CACHE", str(tmp_path / "cache"))
    record = ModelRecord("dl", "recognizer", "dl.safetensors", WRONG, sources=(UrlSource("https://example.invalid/dl.onnx", convert=shutil.copy),))
    cached = record.cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated download")
    monkeypatch.setitem(registry.REGISTRY, "dl", record)
    with pytest.raises(HashMismatch, match=r"Delete the file and run `facecloak models fetch dl`"):
        registry.resolve("dl", download=False)
    assert cached.exists()  # the advice is the user's to follow; resolve deletes nothing


def test_hash_mismatch_is_a_model_load_failure():
    assert issubclass(HashMismatch, ModelNotAvailable)


def test_protect_prints_the_whole_advice_and_exits_3(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.REGISTRY, "hiding_net", replace(get_record("hiding_net"), sha256=WRONG))
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(EXAMPLES / "astronaut.jpg", src / "astronaut.jpg")
    r = CliRunner().invoke(app, ["protect", str(src / "astronaut.jpg"), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 3, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert_shipped_advice(lines[0])
    assert not (tmp_path / "out").exists()
