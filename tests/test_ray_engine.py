"""`protect --engine ray`: the local engine's results from Ray actors, on a local 2-CPU Ray instance.

One Ray instance and one folder of real photos (plus a truncated file) serve the whole module,
because starting Ray and loading the models in each actor takes seconds on a small machine.
"""
import json
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecloak.cli import app
from facecloak.protect import ProtectOptions
from facecloak.ray_engine import INSTALL_HINT, CloakerSpec, ProtectWorker, SizingError, size_workers
from tests.fakes import FixedDetector, landmarks_at, tiny_cloaker

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PHOTOS = ("astronaut.jpg", "two_faces.jpg", "coffee.jpg")
COUNTS = ("images", "ok", "faces_unprotected", "no_face", "skipped", "errors", "faces_found", "faces_protected")


def protect(*args):
    return CliRunner().invoke(app, ["protect", *map(str, args), "--quiet", "--device", "cpu"])


@pytest.fixture(scope="module")
def ray_local():
    import ray  # the [ray] extra: installed by .ci/run and the README's test command
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a cluster left running
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(ray_local, tmp_path_factory):
    """The same folder protected by the local engine, and by Ray with 2 actors and one photo per batch
    (so the photos are spread over both actors, in batches unlike the local run's)."""
    tmp = tmp_path_factory.mktemp("ray")
    src = tmp / "in"
    src.mkdir()
    for name in PHOTOS:
        shutil.copy(EXAMPLES / name, src / name)
    (src / "broken.jpg").write_bytes((EXAMPLES / "astronaut.jpg").read_bytes()[:5000])
    local = protect(src, "--out", tmp / "local", "--report", tmp / "local.json")
    ray = protect(src, "--out", tmp / "ray", "--report", tmp / "ray.json", "--engine", "ray", "--num-workers", 2, "--batch-size", 1)
    return tmp, local, ray, json.loads((tmp / "local.json").read_text()), json.loads((tmp / "ray.json").read_text())


def psnr(a: Path, b: Path) -> float:
    x, y = (np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in (a, b))
    mse = ((x - y) ** 2).mean()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def by_name(report: dict) -> dict:
    return {Path(r["input"]).name: r for r in report["records"]}


@pytest.mark.slow
def test_same_outputs_pixels_and_identities_as_local(runs):
    tmp, _, _, local, ray = runs
    names = sorted(p.name for p in (tmp / "local").iterdir())
    assert names == sorted(p.name for p in (tmp / "ray").iterdir()) == sorted(PHOTOS)
    for name in names:
        assert psnr(tmp / "local" / name, tmp / "ray" / name) >= 40, name
    # Same --seed, same fake identity per face, whichever actor and batch handled the photo.
    for name, rec in by_name(local).items():
        assert [f.get("identity") for f in by_name(ray)[name]["faces"]] == [f.get("identity") for f in rec["faces"]]


@pytest.mark.slow
def test_same_report_counts_and_records(runs):
    _, _, _, local, ray = runs
    assert {k: ray[k] for k in COUNTS} == {k: local[k] for k in COUNTS}
    assert ray["faces_protected"] == 3 and ray["engine"] == "ray" and local["engine"] == "local"
    assert {n: r["status"] for n, r in by_name(ray).items()} == {n: r["status"] for n, r in by_name(local).items()}
    # records name the paths as planned (relative to the folder given), not the workers' absolute ones
    assert {r["output"] for r in ray["records"]} == {r["output"].replace("/local/", "/ray/") if r["output"] else None for r in local["records"]}


@pytest.mark.slow
def test_bad_file_is_reported_and_the_run_goes_on(runs):
    tmp, local, ray, _, report = runs
    assert local.exit_code == ray.exit_code == 1, ray.output
    bad = by_name(report)["broken.jpg"]
    assert bad["status"] == "error" and bad["output"] is None and "broken.jpg" in bad["message"] and "truncated" in bad["message"]
    assert all((tmp / "ray" / n).stat().st_size > 0 for n in PHOTOS)


@pytest.mark.slow
def test_resume_after_a_killed_run(runs):
    """A killed run leaves finished outputs (written by atomic rename) and at most a temporary file
    per photo in flight: the next run skips the former and redoes the photo whose output is missing."""
    tmp, _, _, _, _ = runs
    out = tmp / "resumed"
    out.mkdir()
    shutil.copy(tmp / "ray" / "astronaut.jpg", out / "astronaut.jpg")
    shutil.copy(tmp / "ray" / "coffee.jpg", out / "coffee.jpg")
    (out / ".two_faces.jpg.tmp-0badf00d").write_bytes(b"half a jpeg")  # the photo that was being written
    before = {n: (out / n).stat().st_mtime_ns for n in ("astronaut.jpg", "coffee.jpg")}
    r = protect(tmp / "in", "--out", out, "--report", tmp / "resumed.json", "--engine", "ray")
    rep = json.loads((tmp / "resumed.json").read_text())
    status = {n: rec["status"] for n, rec in by_name(rep).items()}
    assert status == {"astronaut.jpg": "skipped", "coffee.jpg": "skipped", "two_faces.jpg": "ok", "broken.jpg": "error"}
    assert r.exit_code == 1
    assert {n: (out / n).stat().st_mtime_ns for n in before} == before  # not recomputed
    assert psnr(tmp / "ray" / "two_faces.jpg", out / "two_faces.jpg") >= 40


@pytest.mark.slow
def test_file_uris_give_the_same_outputs_report_and_resume_as_paths(runs):
    """file:// URIs go through pyarrow's file systems (the s3:// / gs:// code path): the workers
    copy each photo to a local temp folder, protect it there and upload it. Same files and pixels
    as the run on plain paths, the bad file reported by its URI, and a second run skips it all."""
    tmp, _, _, _, by_path = runs
    src, out = f"file://{tmp}/in", f"file://{tmp}/uri"
    r = protect(src, "--out", out + "/", "--report", tmp / "uri.json", "--engine", "ray", "--batch-size", 2)
    rep = json.loads((tmp / "uri.json").read_text())
    assert r.exit_code == 1, r.output
    assert sorted(p.name for p in (tmp / "uri").iterdir()) == sorted(PHOTOS)  # no temp file left behind
    for name in PHOTOS:
        assert psnr(tmp / "ray" / name, tmp / "uri" / name) >= 40, name
    assert {k: rep[k] for k in COUNTS} == {k: by_path[k] for k in COUNTS}
    recs = by_name(rep)
    assert recs["coffee.jpg"]["input"] == f"{src}/coffee.jpg" and recs["coffee.jpg"]["output"] == f"{out}/coffee.jpg"
    assert recs["broken.jpg"]["status"] == "error" and recs["broken.jpg"]["message"].startswith(f"{src}/broken.jpg: ")
    before = {n: (tmp / "uri" / n).stat().st_mtime_ns for n in PHOTOS}
    # resume: the photos done are skipped from the listing of --out, before anything is shipped
    again = protect(*[f"{src}/{n}" for n in PHOTOS], "--out", out, "--report", tmp / "uri2.json", "--engine", "ray")
    assert again.exit_code == 0, again.output
    assert {n: rec["status"] for n, rec in by_name(json.loads((tmp / "uri2.json").read_text())).items()} == {n: "skipped" for n in PHOTOS}
    assert {n: (tmp / "uri" / n).stat().st_mtime_ns for n in PHOTOS} == before


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_models_is_exit_3(ray_local, tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"not a network")
    r = protect(EXAMPLES / "coffee.jpg", "--out", tmp_path / "out", "--engine", "ray", "--weights", tmp_path / "bad.safetensors")
    assert r.exit_code == 3, r.output
    assert "could not load the models" in r.output and "bad.safetensors" in r.output
    assert not (tmp_path / "out" / "coffee.jpg").exists()


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    r = protect(EXAMPLES / "coffee.jpg", "--out", tmp_path / "out", "--engine", "ray")
    assert r.exit_code == 2
    assert INSTALL_HINT in " ".join(r.output.split())
    assert not (tmp_path / "out").exists()


def test_ray_options_need_the_ray_engine(tmp_path):
    r = protect(EXAMPLES / "coffee.jpg", "--out", tmp_path / "out", "--num-workers", 2)
    assert r.exit_code == 2 and "--engine ray" in r.output
    assert protect(EXAMPLES / "coffee.jpg", "--out", tmp_path / "out", "--engine", "spark").exit_code == 2


class TinySpec(CloakerSpec):
    """A spec whose actor gets the tiny test cloaker (with a verifier said to be missing), or a load failure."""

    def build(self):
        if self.weights == "corrupt":
            raise ValueError("header too large\nsecond line")
        ck = tiny_cloaker(FixedDetector(default=[landmarks_at(150, 150)]))
        ck.unavailable_verifiers = {"dlib_resnet": "dlib is not installed"}
        return ck


def test_actor_protects_its_batch_with_the_local_per_file_code(tmp_path):
    """ProtectWorker in this process (no Ray): one JSON record per file, bad files included, and
    the warnings the driver merges into the summary."""
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    worker = ProtectWorker(TinySpec(), ProtectOptions(out=tmp_path / "out"), threads=1)
    rows = worker({"src": np.array([str(tmp_path / "a.png"), str(tmp_path / "b.png")], dtype=object),
                   "dst": np.array([str(tmp_path / "out" / "a.png"), str(tmp_path / "out" / "b.png")], dtype=object)})
    recs = {Path(r["input"]).name: r for r in map(json.loads, rows["record"])}
    assert recs["a.png"]["status"] == "ok" and len(recs["a.png"]["faces"]) == 1 and (tmp_path / "out" / "a.png").exists()
    assert recs["b.png"]["status"] == "error" and "b.png" in recs["b.png"]["message"]
    assert rows["fatal"] == ["", ""]
    assert all("dlib_resnet could not be loaded" in json.loads(w)[0] for w in rows["warnings"])


def test_actor_that_cannot_load_the_models_says_so_on_every_row(tmp_path):
    worker = ProtectWorker(TinySpec(weights="corrupt"), ProtectOptions(out=tmp_path), threads=1)
    rows = worker({"src": np.array(["x.jpg"], dtype=object), "dst": np.array([str(tmp_path / "x.jpg")], dtype=object)})
    assert rows["fatal"] == ["ValueError: header too large"] and not (tmp_path / "x.jpg").exists()


def test_nothing_left_to_do_ships_nothing(tmp_path, monkeypatch):
    """Done outputs are dropped on the driver: a finished archive is not sent to Ray at all."""
    import facecloak.ray_engine as engine

    monkeypatch.setattr(engine, "connect", lambda *a: pytest.fail("Ray was started with nothing to do"))
    (tmp_path / "out").mkdir()
    shutil.copy(EXAMPLES / "coffee.jpg", tmp_path / "out" / "coffee.jpg")
    r = protect(EXAMPLES / "coffee.jpg", "--out", tmp_path / "out", "--engine", "ray", "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "r.json").read_text())["skipped"] == 1


def test_an_address_where_nothing_answers_is_a_quick_usage_error(tmp_path):
    """Ray would retry an unreachable cluster for minutes; the engine checks the port first."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again below: nothing listens there
    r = protect(EXAMPLES / "coffee.jpg", "--out", tmp_path / "out", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}")
    assert r.exit_code == 2 and "nothing answers there" in r.output and "ray start --head" in r.output
    assert not (tmp_path / "out").exists()


def test_sizing_one_actor_per_gpu():
    s = size_workers([{"CPU": 16, "GPU": 4}, {"CPU": 8, "GPU": 2}, {"CPU": 4}])
    assert (s.workers, s.gpus, s.cpus, s.threads) == (6, 1.0, 4.0, 4)  # min(16/4, 8/2) CPUs each
    assert size_workers([{"CPU": 8, "GPU": 2}], gpus_per_worker=0.5).workers == 4
    assert size_workers([{"CPU": 8, "GPU": 2}], device="cpu").gpus == 0  # --device cpu: CPU actors


def test_sizing_cpu_actors_do_not_oversubscribe():
    assert size_workers([{"CPU": 2}]) == size_workers([{"CPU": 2}], num_workers=1)
    s = size_workers([{"CPU": 2}])
    assert (s.workers, s.cpus, s.threads) == (1, 2.0, 2)
    s = size_workers([{"CPU": 16}, {"CPU": 8}])
    assert (s.workers, s.threads) == (6, 4) and s.workers * s.threads <= 24
    s = size_workers([{"CPU": 2}], num_workers=2)
    assert (s.workers, s.cpus, s.threads) == (2, 1.0, 1)
    assert size_workers([{"CPU": 4}, {"CPU": 4}], num_workers=1).cpus == 4  # an actor fits on one node


def test_sizing_refuses_what_the_cluster_lacks():
    with pytest.raises(SizingError, match="no GPU"):
        size_workers([{"CPU": 4}], device="cuda")
    with pytest.raises(SizingError, match="no GPU"):
        size_workers([{"CPU": 4}], gpus_per_worker=1)
    with pytest.raises(SizingError, match="largest: 1"):
        size_workers([{"CPU": 4, "GPU": 1}], gpus_per_worker=2)


def test_default_install_does_not_pull_ray_and_ci_installs_the_extra():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.lower().startswith("ray") for d in meta["dependencies"])
    assert meta["optional-dependencies"]["ray"] == ["ray[data]>=2.9"]
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -q -e ".[eval,dev,ray]"' in ci and '".[eval,dev,ray]"' in readme
