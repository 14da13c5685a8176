"""The top-level Python API: ``facecloak.protect_image`` and ``facecloak.Cloaker``, as the README shows them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facecloak
from facecloak.imageio import ImageError
from tests.fakes import FixedDetector, landmarks_at, tiny_cloaker

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light_and_exports_the_api():
    code = "import sys, facecloak; print(facecloak.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [facecloak.__version__, "False"]
    for name in facecloak.__all__:
        assert getattr(facecloak, name) is not None and name in dir(facecloak)
    from facecloak.cloak import Cloaker

    assert facecloak.Cloaker is Cloaker
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        facecloak.nope


def _photo(w: int = 320, h: int = 240) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 220, (h, w, 3), dtype=np.uint8)


def test_protect_image_array_changes_only_the_face():
    rgb = _photo()
    cloaker = tiny_cloaker(FixedDetector(default=[landmarks_at(160, 120)]))
    result = facecloak.protect_image(rgb, cloaker=cloaker)
    assert result.rgb.shape == rgb.shape and result.rgb.dtype == np.uint8
    [face] = result.faces
    assert face.status == "protected" and face.identity is not None and face.psnr > 20
    changed = np.any(result.rgb != rgb, axis=2)
    assert changed.any() and not changed[:, :40].any()  # the left border is far from the face


def test_protect_image_file_writes_out(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(_photo()).save(src)
    cloaker = tiny_cloaker(FixedDetector(default=[landmarks_at(160, 120)]))
    result = facecloak.protect_image(src, out=tmp_path / "sub" / "out.png", cloaker=cloaker)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "out.png").convert("RGB")), result.rgb)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8), [[1, 2]]])
def test_protect_image_rejects_arrays_it_cannot_use(bad):
    with pytest.raises(ValueError, match=r"needs a file path or an \(H, W, 3\) uint8 RGB array"):
        facecloak.protect_image(bad, cloaker=tiny_cloaker())


def test_protect_image_missing_file_names_it(tmp_path):
    with pytest.raises(ImageError, match="nothing.jpg"):
        facecloak.protect_image(tmp_path / "nothing.jpg", cloaker=tiny_cloaker())


def test_unknown_mode_is_refused_before_loading_models():
    with pytest.raises(ValueError, match="mode must be 'fast' or 'strong'"):
        facecloak.protect_image(_photo(), mode="medium")


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_example_runs_as_documented(tmp_path, monkeypatch):
    """The README's Python API block, run unchanged with the shipped models on the example photos."""
    from facecloak import api

    os.symlink(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    try:
        exec(compile(_readme_example(), "README.md", "exec"), ns)
    finally:
        api._pretrained.cache_clear()
    two = np.asarray(Image.open(ROOT / "examples" / "two_faces.jpg").convert("RGB"))
    assert [f.status for f in ns["result"].faces] == ["protected", "protected"]
    assert ns["protected"].shape == two.shape and np.any(ns["protected"] != two)
    assert Image.open(tmp_path / "safe" / "two_faces.jpg").size == (two.shape[1], two.shape[0])
    assert [f.status for f in ns["mine"].faces] == ["protected"] and np.any(ns["mine"].rgb != ns["rgb"])
    assert [len(r.faces) for r in ns["batch"]] == [1, 2]
