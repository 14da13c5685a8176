"""File-system URIs for `protect --engine ray` (facecloak.storage), without Ray: listing, planning
with the local planner's rules, skip-existing, and the workers' download / protect / upload.

``file://`` URIs go through pyarrow's LocalFileSystem, the same code path as ``s3://`` and
``gs://``; pyarrow's in-memory mock file system stands in for an object store (no rename).
The Ray runs on file:// URIs are in test_ray_engine.py, beside the local-path runs they match.
"""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pyarrow import fs as pafs
from typer.testing import CliRunner

from facecloak.cli import app
from facecloak.protect import PlanError, ProtectOptions, plan
from facecloak.storage import (Location, destinations, is_uri, join_uri, list_images, pending_uris, plan_uris,
                               protect_via_local_copies, resolve, upload)
from tests.fakes import FixedDetector, landmarks_at, tiny_cloaker

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def info(path, is_file=True):
    return SimpleNamespace(path=path, is_file=is_file)


def test_is_uri_and_join_keep_a_query_at_the_end():
    assert is_uri("s3://b/k") and is_uri("file:///tmp/x") and not is_uri("photos/a.jpg") and not is_uri("/abs/s3:/x")
    assert join_uri("s3://b/in/", "a/1.jpg") == "s3://b/in/a/1.jpg"
    assert join_uri("s3://b/in?region=eu-west-1", "1.jpg") == "s3://b/in/1.jpg?region=eu-west-1"
    assert join_uri("photos", "a/1.jpg") == "photos/a/1.jpg" and join_uri("photos", ".") == "photos"


def test_listing_takes_photos_like_the_local_walk():
    infos = [info("b/in/a.JPG"), info("b/in/notes.txt"), info("b/in/.hidden.jpg"), info("b/in/sub", False),
             info("b/in/sub/c.png"), info("b/in/.cache/d.jpg"), info("b/in/out/a.jpg"), info("b/in/.a.jpg.tmp-1234abcd")]
    infos.append(info("b/in/z.jpg"))
    assert list_images(infos, "b/in", recursive=True, exclude="b/in/out") == ["b/in/a.JPG", "b/in/z.jpg", "b/in/sub/c.png"]
    assert list_images(infos, "b/in", recursive=False) == ["b/in/a.JPG", "b/in/z.jpg"]  # direct children only


def test_destinations_mirror_layout_suffix_and_collisions():
    opts = ProtectOptions(out=Path("unused"), suffix="_c")
    files = ["b/in/x/a.jpg", "b/in/a.gif", "b/in/a.png"]
    assert destinations(files, "b/in", "b/out", opts) == ["b/out/x/a_c.jpg", "b/out/a_c_gif.png", "b/out/a_c.png"]
    # several buckets share no folder: each keeps its bucket in the layout
    assert destinations(["b1/a.jpg", "b2/a.jpg"], "", "o/safe", ProtectOptions(out=Path("unused"))) == ["o/safe/b1/a.jpg", "o/safe/b2/a.jpg"]
    with pytest.raises(PlanError, match="would both be written"):
        destinations(["b/in/a.gif", "b/in/a.png", "b/in/a_gif.png"], "b/in", "b/out", ProtectOptions(out=Path("unused")))


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "in"
    (src / "2023").mkdir(parents=True)
    for rel in ("a.jpg", "b.gif", "b.png", "2023/c.jpg", ".hidden.jpg", "notes.txt"):
        (src / rel).write_bytes(b"x")
    return tmp_path, src


def test_file_uris_are_planned_like_the_same_local_paths(tree):
    tmp, src = tree
    local = plan([src], ProtectOptions(out=tmp / "out", recursive=True, suffix="_c"))
    uris = plan_uris([f"file://{src}"], f"file://{tmp}/out/", ProtectOptions(out=Path("unused"), recursive=True, suffix="_c"))
    assert [(s.path, d.path) for s, d in uris.jobs] == [(str(s), str(d)) for s, d in local.jobs]
    assert [(s.uri, d.uri) for s, d in uris.jobs][-1] == (f"file://{src}/2023/c.jpg", f"file://{tmp}/out/2023/c_c.jpg")
    assert {d.uri for _, d in uris.jobs} >= {f"file://{tmp}/out/b_c_gif.png", f"file://{tmp}/out/b_c.png"}


def test_mixed_local_input_and_uri_output(tree):
    tmp, src = tree
    p = plan_uris([str(src / "a.jpg")], f"file://{tmp}/safe", ProtectOptions(out=Path("unused")))
    assert [(s.uri, d.uri) for s, d in p.jobs] == [(str(src / "a.jpg"), f"file://{tmp}/safe/a.jpg")]


def test_planning_refuses_what_the_local_planner_refuses(tree):
    tmp, src = tree
    opts = ProtectOptions(out=Path("unused"))
    with pytest.raises(PlanError, match="is or contains an input"):
        plan_uris([f"file://{src}"], f"file://{src}", opts)
    with pytest.raises(PlanError, match="is a file"):
        plan_uris([f"file://{src}"], f"file://{src}/a.jpg", opts)
    with pytest.raises(PlanError, match="cannot open this URI"):
        plan_uris(["nosuchfs://bucket/photos"], f"file://{tmp}/out", opts)
    # --out inside the input folder with --suffix: its earlier outputs are not read back as inputs
    (src / "a_c.jpg").write_bytes(b"x")
    beside = plan_uris([f"file://{src}"], f"file://{src}", ProtectOptions(out=Path("unused"), suffix="_c"))
    assert sorted(Path(s.path).name for s, _ in beside.jobs) == ["a.jpg", "b.gif", "b.png"]


def test_paths_and_file_uris_are_refused_and_recorded_in_the_same_words(tree):
    """One planner serves both: the same inputs as paths or as file:// URIs give the same
    refusals and records, but for the names (a URI is the path with file:// in front)."""
    tmp, src = tree
    for rel in ("b_c_gif.png", "a_c.jpg", "b_gif.png"):
        (src / rel).write_bytes(b"x")

    def said(names, out, **kw):
        """(PlanError message or None, records) for paths, and for file:// URIs with file:// taken out."""
        got = []
        for how in (lambda: plan([src / n for n in names], ProtectOptions(out=out, **kw)),
                    lambda: plan_uris([f"file://{src / n}" for n in names], f"file://{out}", ProtectOptions(out=Path("unused"), **kw))):
            try:
                p = how()
                got.append((None, [(r.input, r.status, r.message) for r in p.records]))
            except PlanError as e:
                got.append((str(e), []))
        return [(m and m.replace("file://", ""), [tuple(x.replace("file://", "") for x in r) for r in recs]) for m, recs in got]

    cases = [(["."], src, {}),  # --out is the input folder, no --suffix
             (["b.gif", "b.png", "b_gif.png"], tmp / "out", {}),  # b.gif -> b_gif.png is taken: refused
             (["."], src, {"suffix": "_c"}),  # b.gif -> b_c_gif.png, which is an input
             (["a.jpg", "a_c.jpg"], src, {"suffix": "_c"})]  # an earlier output listed by name: skipped
    for names, out, kw in cases:
        local, uri = said(names, out, **kw)
        assert local == uri and (local[0] or local[1]), (names, kw, local)


def test_a_missing_input_is_an_error_record_and_the_rest_is_planned(tree):
    tmp, src = tree
    p = plan_uris([f"file://{src}/a.jpg", f"file://{src}/gone.jpg"], f"file://{tmp}/out", ProtectOptions(out=Path("unused")))
    assert [s.uri for s, _ in p.jobs] == [f"file://{src}/a.jpg"]
    assert [(r.input, r.status) for r in p.records] == [(f"file://{src}/gone.jpg", "error")]
    assert "no such file or folder" in p.records[0].message


def test_finished_outputs_are_skipped_and_temp_files_are_not_outputs(tree):
    tmp, src = tree
    p = plan_uris([f"file://{src}"], f"file://{tmp}/out", ProtectOptions(out=Path("unused")))
    (tmp / "out").mkdir()
    (tmp / "out" / "a.jpg").write_bytes(b"done")
    (tmp / "out" / ".b.png.tmp-0badf00d").write_bytes(b"half")  # a killed upload
    todo, skipped = pending_uris(p, ProtectOptions(out=Path("unused")))
    assert [r.input for r in skipped] == [f"file://{src}/a.jpg"] and skipped[0].output == f"file://{tmp}/out/a.jpg"
    assert sorted(Path(s.path).name for s, _ in todo) == ["b.gif", "b.png"]
    assert len(pending_uris(p, ProtectOptions(out=Path("unused"), overwrite=True))[0]) == 3


def test_worker_protects_local_copies_and_uploads_with_uris(tmp_path):
    """The actor's per-batch work without Ray: a good photo is protected and uploaded (atomic
    rename on a local file system: no temp file left), a bad one is an error naming its URI."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(src / "a.png")
    (src / "b.png").write_bytes(b"not a png")
    p = plan_uris([f"file://{src}"], f"file://{tmp_path}/out", ProtectOptions(out=Path("unused")))
    ck = tiny_cloaker(FixedDetector(default=[landmarks_at(150, 150)]))
    recs = protect_via_local_copies(ck, p.jobs, ProtectOptions(out=Path("unused")))
    assert [(r.input, r.status, r.output) for r in recs] == [
        (f"file://{src}/a.png", "ok", f"file://{tmp_path}/out/a.png"), (f"file://{src}/b.png", "error", None)]
    assert recs[1].message.startswith(f"file://{src}/b.png: ") and "/tmp/facecloak-" not in recs[1].message
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    assert np.abs(np.asarray(Image.open(tmp_path / "out" / "a.png"), float) - 128).max() > 0  # the face was changed


def test_object_store_uploads_are_direct_writes():
    """pyarrow's mock file system has no atomic rename (type 'mock', like s3/gcs): the object is
    written in one go at its destination, never under a temporary name."""
    mock = pafs._MockFileSystem()
    local = Path(__file__).resolve().parents[1] / "examples" / "coffee.jpg"
    upload(local, Location(mock, "bucket/safe/x/coffee.jpg", "mock://bucket/safe/x/coffee.jpg"))
    listed = [i.path for i in mock.get_file_info(pafs.FileSelector("bucket", recursive=True)) if i.is_file]
    assert listed == ["bucket/safe/x/coffee.jpg"]
    with mock.open_input_stream(listed[0]) as f:
        assert f.read() == local.read_bytes()


def test_upload_failure_is_an_error_record(tmp_path, monkeypatch):
    import facecloak.storage as storage

    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(storage, "upload", lambda *a: (_ for _ in ()).throw(PermissionError("Access Denied")))
    job = (resolve(tmp_path / "a.png"), Location(pafs.LocalFileSystem(), str(tmp_path / "o" / "a.png"), "s3://b/o/a.png"))
    [rec] = protect_via_local_copies(tiny_cloaker(), [job], ProtectOptions(out=Path("unused")))
    assert (rec.status, rec.output) == ("error", None)
    assert rec.message.startswith("s3://b/o/a.png: cannot write it (Access Denied)")


def test_the_local_engine_says_uris_need_the_ray_engine(tmp_path):
    r = CliRunner().invoke(app, ["protect", f"file://{EXAMPLES}/coffee.jpg", "--out", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 2, r.output
    assert "need --engine ray" in " ".join(r.output.split())
    assert not (tmp_path / "out").exists()
