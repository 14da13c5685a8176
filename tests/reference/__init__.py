"""Outputs of the reference implementations (facexlib, lpips, torchvision) that our own modules
are tested against; written by ``record.py`` in this folder, which says how and why."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np


@cache
def reference(name: str) -> dict[str, np.ndarray]:
    """``tests/reference/<name>.npz`` as a dict (plain arrays: no pickle)."""
    with np.load(Path(__file__).parent / f"{name}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
