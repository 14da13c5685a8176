"""One input, one output, always (issue 12, cases 2 and 3): outputs are planned before any work,
never shared, never an original, and --out may not swallow the inputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from facecloak.protect import PlanError, ProtectOptions, common_root, plan
from tests.test_protect_cli import digest, fake_models, make_photos, run  # noqa: F401 - fake_models is an autouse fixture


def photo(path: Path, fmt: str | None = None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (300, 320, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)
    return path


def report(path: Path) -> dict:
    return json.loads(path.read_text())


def outputs(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_same_name_in_two_folders_from_a_list_gives_two_outputs(tmp_path):
    a = photo(tmp_path / "photos" / "2023" / "IMG_0001.jpg", seed=1)
    b = photo(tmp_path / "photos" / "2024" / "IMG_0001.jpg", seed=2)
    out = tmp_path / "safe"
    r = run("--from-list", "-", "--out", out, "--report", tmp_path / "r.json", "--quiet", input=f"{a}\n{b}\n")
    assert r.exit_code == 0, r.output
    assert outputs(out) == ["2023/IMG_0001.jpg", "2024/IMG_0001.jpg"]
    recs = report(tmp_path / "r.json")["records"]
    assert len({x["output"] for x in recs}) == 2 and all(x["status"] == "ok" for x in recs)


def test_file_arguments_keep_paths_relative_to_their_common_root(tmp_path):
    a = photo(tmp_path / "p" / "x" / "a.jpg")
    b = photo(tmp_path / "p" / "y" / "z" / "a.jpg", seed=3)
    assert common_root([a, b]) == tmp_path / "p"
    assert common_root([tmp_path / "p"]) == tmp_path / "p"  # one folder maps onto --out itself
    r = run(a, b, "--out", tmp_path / "o", "--quiet")
    assert r.exit_code == 0, r.output
    assert outputs(tmp_path / "o") == ["x/a.jpg", "y/z/a.jpg"]


def test_same_file_listed_twice_is_one_job(tmp_path):
    a = photo(tmp_path / "in" / "a.jpg")
    p = plan([a, str(a), tmp_path / "in" / ".." / "in" / "a.jpg", tmp_path / "in"], ProtectOptions(out=tmp_path / "o"))
    assert len(p.jobs) == 1


def test_format_change_collisions_are_told_apart(tmp_path):
    src = tmp_path / "in"
    photo(src / "a.jpg", seed=1)
    photo(src / "a.png", seed=2)
    photo(src / "b.gif", "GIF", seed=3)
    photo(src / "b.png", seed=4)
    out = tmp_path / "out"
    r = run(src, "--out", out, "--format", "png", "--report", tmp_path / "r.json", "--quiet")
    assert r.exit_code == 0, r.output
    assert outputs(out) == ["a.png", "a_jpg.png", "b.png", "b_gif.png"]
    pairs = {Path(x["input"]).name: Path(x["output"]).name for x in report(tmp_path / "r.json")["records"]}
    assert pairs == {"a.jpg": "a_jpg.png", "a.png": "a.png", "b.gif": "b_gif.png", "b.png": "b.png"}
    # b.gif + b.png without --format collide the same way (GIF is written as PNG)
    r = run(src / "b.gif", src / "b.png", "--out", tmp_path / "out2", "--quiet")
    assert r.exit_code == 0 and outputs(tmp_path / "out2") == ["b.png", "b_gif.png"]


def test_collisions_that_cannot_be_told_apart_are_refused_before_any_work(tmp_path):
    src = tmp_path / "in"
    photo(src / "a.jpg", seed=1)
    photo(src / "a_jpg.png", seed=2)  # what a.jpg would be renamed to
    photo(src / "a.png", seed=3)
    r = run(src, "--out", tmp_path / "out", "--format", "png", "--quiet")
    assert r.exit_code == 2 and "would both be written to" in r.output
    assert not (tmp_path / "out").exists()  # nothing written


def test_out_equal_to_the_input_folder_is_a_usage_error(tmp_path):
    src = tmp_path / "photos"
    make_photos(src, 2)
    before = digest(src)
    for out in (src, tmp_path):  # the folder itself, and a parent of it
        r = run(src, "--out", out, "--quiet")
        assert r.exit_code == 2 and "--suffix" in r.output, r.output
    assert digest(src) == before


def test_format_change_never_targets_an_original(tmp_path):
    """photos/a.jpg --out photos --format png would target photos/a.png, an original."""
    src = tmp_path / "photos"
    a = photo(src / "a.jpg", seed=1)
    photo(src / "a.png", seed=2)
    before = digest(src)
    for extra in ([], ["--overwrite"]):
        r = run(a, "--out", src, "--format", "png", "--quiet", *extra)
        assert r.exit_code == 2, r.output
    assert digest(src) == before


def test_out_inside_the_inputs_with_a_suffix_writes_beside_and_never_rereads(tmp_path):
    src = tmp_path / "photos"
    make_photos(src, 2)
    for i in range(2):
        r = run(src, "--out", src, "--suffix", "_safe", "--report", tmp_path / "r.json", "--quiet", *(["--overwrite"] if i else []))
        assert r.exit_code == 0, r.output
        rep = report(tmp_path / "r.json")
        assert rep["images"] == 2 and rep["ok"] == 2  # the _safe outputs are not inputs the second time
    assert sorted(p.name for p in src.iterdir()) == ["p0.jpg", "p0_safe.jpg", "p1.jpg", "p1_safe.jpg"]
    # listed by name, an earlier output is reported as skipped, not protected again
    r = run(src / "p0.jpg", src / "p0_safe.jpg", "--out", src, "--suffix", "_safe", "--report", tmp_path / "r.json", "--quiet")
    status = {Path(x["input"]).name: x["status"] for x in report(tmp_path / "r.json")["records"]}
    assert r.exit_code == 0 and status == {"p0.jpg": "skipped", "p0_safe.jpg": "skipped"}


def test_rerunning_find_with_out_inside_the_tree_says_so(tmp_path, monkeypatch):
    """`find . -name '*.jpg' | facecloak protect --from-list - --out safe`, run twice."""
    monkeypatch.chdir(tmp_path)
    make_photos(tmp_path / "photos", 2)

    def find():
        return "".join(f"./{p.relative_to(tmp_path)}\n" for p in sorted(tmp_path.rglob("*.jpg")))

    assert run("--from-list", "-", "--out", "safe", "--quiet", input=find()).exit_code == 0
    assert outputs(tmp_path / "safe") == ["p0.jpg", "p1.jpg"]
    before = digest(tmp_path / "safe")
    r = run("--from-list", "-", "--out", "safe", "--quiet", input=find())  # now lists safe/*.jpg too
    assert r.exit_code == 2 and "earlier output" in r.output
    assert digest(tmp_path / "safe") == before and outputs(tmp_path / "safe") == ["p0.jpg", "p1.jpg"]


def test_plan_refuses_before_reading_any_photo(tmp_path):
    src = tmp_path / "in"
    make_photos(src, 1)
    for opts in (ProtectOptions(out=src), ProtectOptions(out=tmp_path / "o", suffix="a/b")):
        try:
            plan([src], opts)
        except PlanError:
            continue
        raise AssertionError(f"{opts} was planned")
    assert not (tmp_path / "o").exists() and os.listdir(src) == ["p0.jpg"]


def test_planning_local_paths_needs_no_pyarrow(tmp_path):
    """pyarrow comes only with the [ray] extra: the default install plans local paths without it
    (the one planner serves URIs through facecloak.storage, which imports pyarrow only for a URI)."""
    photo(tmp_path / "in" / "a.jpg")
    code = ("import sys; sys.modules['pyarrow'] = None\n"  # any `import pyarrow` now raises ImportError
            "from pathlib import Path\nfrom facecloak.protect import ProtectOptions, plan\nfrom facecloak.storage import is_uri\n"
            f"p = plan([Path({str(tmp_path / 'in')!r})], ProtectOptions(out=Path({str(tmp_path / 'o')!r})))\n"
            "print([(s.name, str(d)) for s, d in p.jobs], is_uri('photos'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{[('a.jpg', str(tmp_path / 'o' / 'a.jpg'))]} False"
