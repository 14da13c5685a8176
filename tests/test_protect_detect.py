"""Detection that honours --min-face on large photos: the tiled second pass (issue 12, case 1)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from reference import reference

from facecloak.align import CANONICAL_256, warp_face
from facecloak.detect import (
    DETECT_EYE_PX, FaceDetector, anchors, decode, detection_scale, nms, second_pass_scale, tile_grid, tile_overlap,
)

ROOT = Path(__file__).resolve().parents[1]
CANONICAL_EYE = float(np.linalg.norm(CANONICAL_256[1] - CANONICAL_256[0]))  # 63 px in the 256 crop


def test_second_pass_only_when_the_first_shrinks_min_face_below_the_detector():
    # 6000 px long side: first pass at 1280/6000; a 20 px eye distance needs scale 16/20.
    s1 = detection_scale(4000, 6000, 1280, 320)
    assert second_pass_scale(s1, 20.0) == pytest.approx(DETECT_EYE_PX / 20.0)
    assert second_pass_scale(1.0, 20.0) is None  # small photo: already native
    assert second_pass_scale(s1, 200.0) is None  # only huge faces wanted: first pass suffices
    assert second_pass_scale(s1, 5.0) == 1.0  # never upsample
    assert second_pass_scale(s1, None) is None and second_pass_scale(s1, 0) is None


@pytest.mark.parametrize("length,tile,overlap", [(3200, 1280, 120), (2400, 1280, 120), (1281, 1280, 64), (9000, 1280, 640), (500, 1280, 64)])
def test_tiles_cover_everything_once_and_overlap_enough(length, tile, overlap):
    tiles = tile_grid(length, tile, overlap)
    owner = np.zeros(length, int)
    for a, b, lo, hi in tiles:
        assert 0 <= a <= lo < hi <= b <= length and b - a <= tile
        owner[lo:hi] += 1
        # a face of size <= overlap centred in the core lies inside the tile
        assert (lo - overlap / 2 >= a or a == 0) and (hi + overlap / 2 <= b or b == length)
    assert (owner == 1).all()
    for (a0, b0, _, _), (a1, _, _, _) in zip(tiles, tiles[1:]):
        assert b0 - a1 >= overlap - 1


def test_overlap_grows_with_the_gap_between_passes():
    assert tile_overlap(0.32, 0.8, 1280) == int(np.ceil(3 * DETECT_EYE_PX * 0.8 / 0.32))
    assert tile_overlap(0.9, 1.0, 1280) == 64 and tile_overlap(0.01, 1.0, 1280) == 640


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.8, 0.95, 0.9, 0.1])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 2, 0]  # the exact duplicate of box 0 (IoU 1) still goes


def test_priors_and_decoding_match_facexlib():
    """Against facexlib's ``PriorBox`` / ``decode`` / ``decode_landm`` on a 70x100 image, as recorded
    by tests/reference/record.py (facexlib needs torchvision, which CI's CPU torch cannot import)."""
    ref = reference("facexlib")
    h, w = 70, 100
    priors = ref["priors"]
    mine = anchors(h, w)
    assert mine.shape[0] == priors.shape[0]
    np.testing.assert_allclose(mine[:, :2] / [w, h], priors[:, :2], atol=1e-6)
    np.testing.assert_allclose(mine[:, 2:3] / [w, h], priors[:, 2:], atol=1e-6)
    boxes, lms = decode(ref["decode_loc"], ref["decode_landm"], mine)
    np.testing.assert_allclose(boxes, ref["decoded_boxes"] * [w, h, w, h], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(lms, ref["decoded_landms"] * np.tile([w, h], 5), rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------- real detector, real faces


def face_chips(detector: FaceDetector) -> list[np.ndarray]:
    """Canonical 256 crops of six real photos the tests already use (4 fixtures + 2 examples)."""
    fixtures = ROOT / "tests" / "fixtures" / "zoo_arcface_sface_dcgan"
    chips = [np.asarray(Image.open(fixtures / f"{n}.jpg").convert("RGB")) for n in ("obama", "obama2", "obama3", "biden")]
    for n in ("astronaut", "grace_hopper"):
        img = np.asarray(Image.open(ROOT / "examples" / f"{n}.jpg").convert("RGB"))
        chips.append(warp_face(img, detector.detect(img)[0].landmarks, "canonical256")[0])
    return chips


def group_photo(chips, eye: float, size=(6000, 4000), grid=(6, 4), seed: int = 0):
    """A textured background with grid[0] x grid[1] pasted faces of eye distance ~``eye`` px;
    returns the photo and each face's eye midpoint."""
    w, h = size
    rng = np.random.default_rng(seed)
    ys, xs = np.ogrid[0:h, 0:w]
    bg = 120 + 40 * np.sin(xs / 37.0, dtype=np.float32) * np.cos(ys / 53.0, dtype=np.float32)
    img = np.clip(bg[..., None] * np.float32([1.0, 0.95, 0.85]) + rng.normal(0, 10, (h, w, 1)).astype(np.float32), 0, 255).astype(np.uint8)
    cw, ch = w // grid[0], h // grid[1]
    centres = []
    for k in range(grid[0] * grid[1]):
        chip = chips[k % len(chips)]
        if (k // len(chips)) % 2:
            chip = np.ascontiguousarray(chip[:, ::-1])
        side = round(256 * eye * rng.uniform(0.95, 1.05) / CANONICAL_EYE)
        chip = cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA)
        i, j = k % grid[0], k // grid[0]
        x0, y0 = i * cw + int(rng.integers(0, cw - side)), j * ch + int(rng.integers(0, ch - side))
        img[y0 : y0 + side, x0 : x0 + side] = chip
        centres.append(np.array([x0, y0]) + CANONICAL_256[:2].mean(0) * side / 256)
    return img, np.array(centres)


@pytest.mark.slow
def test_finds_small_faces_in_a_24_megapixel_group_photo():
    """Issue 12: 24 faces at ~110 px (eye distance 35) in 6000x4000; the 1280 px pass alone found 0."""
    det = FaceDetector("cpu")  # defaults: threshold 0.9, min_eye 20 (= --min-face)
    img, eyes = group_photo(face_chips(det), eye=35.0)
    faces = det.detect(img)
    hits = [any(np.linalg.norm(f.landmarks[:2].mean(0) - e) < 35 / 3 for f in faces) for e in eyes]
    assert sum(hits) >= 23, f"found {sum(hits)} of 24"
    assert len(faces) <= 25  # no duplicates from overlapping tiles or the two passes
    eye_dist = [np.linalg.norm(f.landmarks[1] - f.landmarks[0]) for f in faces]
    assert 28 < np.median(eye_dist) < 42  # landmarks are in original-photo pixels
