"""End-to-end protocol pieces: framing small photos, the attacker's HOG alignment on real faces."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecloak.eval.e2e import FRAME_MIN_SIDE, frame_photo

FACES = Path(__file__).parent / "fixtures" / "zoo_arcface_sface_dcgan"


def test_small_photos_are_upscaled_into_a_grey_frame():
    orl_like = np.random.default_rng(0).integers(0, 255, (112, 92, 3), dtype=np.uint8)
    framed = frame_photo(orl_like)
    f = 3  # ceil(200 / 92)
    assert framed.shape == (112 * f + 2 * (112 * f // 4), 92 * f + 2 * (92 * f // 4), 3)
    assert (framed[0] == 128).all() and (framed[:, 0] == 128).all()
    assert min(framed.shape[:2]) >= FRAME_MIN_SIDE


def test_large_photos_are_left_alone():
    big = np.zeros((300, 400, 3), np.uint8)
    assert frame_photo(big) is big


@pytest.mark.slow
def test_attacker_view_finds_and_aligns_a_real_face_with_hog():
    import cv2
    import torch

    from facecloak.eval.e2e import HogAligner, attacker_view
    from facecloak.zoo.arcface import load_arcface

    rgb = cv2.cvtColor(cv2.imread(str(FACES / "obama.jpg")), cv2.COLOR_BGR2RGB)  # a canonical 256 crop
    photo = frame_photo(rgb, min_side=400)  # upscaled 2x and framed: the face moves and grows
    crop, lm, found = attacker_view(photo, HogAligner())
    assert found and crop.shape == (256, 256, 3)
    # Re-aligned by another detector, it is still the same face as the canonical original.
    en = load_arcface()
    x = torch.from_numpy(np.stack([rgb, crop])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        e = en(x)
    assert float(e[0] @ e[1]) > 0.8
    # A blank image has no face: no landmarks unless a fallback is given.
    blank = np.full((300, 300, 3), 128, np.uint8)
    assert attacker_view(blank, HogAligner())[2] is False
    assert attacker_view(blank, HogAligner())[0] is None
    assert attacker_view(blank, HogAligner(), fallback=lm)[0].shape == (256, 256, 3)
