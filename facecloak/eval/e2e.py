"""End-to-end evaluation: what an attacker gets from a protected *photo* (issue 13).

The crop protocol scores aligned 256x256 crops straight out of the network. A user's attacker
instead gets the whole protected photo, as ``facecloak protect`` writes it: the change pasted
back under the feathered mask and saved as JPEG at the default quality, and then finds and
aligns the face with *their own* detector. Here:

1. every benchmark photo is copied as a JPEG (quality 95); photos smaller than
   ``FRAME_MIN_SIDE`` (ORL's 92x112 greyscale crops) are upscaled by an integer factor and put in
   a grey frame, so that they look like a small portrait rather than a tight crop;
2. the probe photos are protected by ``facecloak.protect.run`` with the CLI's default options:
   full photo, RetinaFace, paste-back, JPEG at quality 95;
3. the attacker re-detects and re-aligns every photo, original and protected, with dlib's HOG
   detector and 5-point shape predictor, which the pipeline does not use
   (:func:`attacker_view`), and the recognizers embed those crops.

When HOG finds no face in a protected photo, the attacker still gets the face at the place HOG
found it in the unprotected copy (same geometry): a detector miss is never counted as
protection. ``detected`` reports how often HOG found it on its own.
"""
from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..cache import cache_dir

FRAME_MIN_SIDE = 200  # photos with a shorter side than this are framed
JPEG_QUALITY = 95  # facecloak protect's default --quality
HOG_MAX_SIDE = 640  # HOG runs on a copy scaled down to this (then upsampled once), for speed


def frame_photo(rgb: np.ndarray, min_side: int = FRAME_MIN_SIDE) -> np.ndarray:
    """Small images -> a framed portrait: upscale by f = ceil(min_side / min(h, w)) (bicubic),
    then pad by a quarter of each side with mid-grey (128). Larger images are returned as they are."""
    import cv2

    h, w = rgb.shape[:2]
    if min(h, w) >= min_side:
        return rgb
    f = math.ceil(min_side / min(h, w))
    big = cv2.resize(rgb, (w * f, h * f), interpolation=cv2.INTER_CUBIC)
    py, px = big.shape[0] // 4, big.shape[1] // 4
    return cv2.copyMakeBorder(big, py, py, px, px, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def _save_jpeg(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=JPEG_QUALITY)


def _read(path: Path) -> np.ndarray:
    from ..imageio import load_image

    return load_image(path).rgb


def photo_set(photos: dict[str, Path], keys: list[str]) -> dict[str, Path]:
    """JPEG copies (framed when small) of the photos of ``keys``, cached; key -> ``<person>/<stem>.jpg``."""
    tag = hashlib.sha256("|".join(f"{k}={photos[k]}" for k in sorted(keys)).encode()).hexdigest()[:12]
    root = cache_dir() / "eval-photos" / tag
    out = {}
    for k in keys:
        dst = root / f"{k}.jpg"
        if not dst.exists():
            _save_jpeg(frame_photo(_read(photos[k])), dst)
        out[k] = dst
    return out


class HogAligner:
    """The attacker's detector: dlib HOG + 5-point shape -> facecloak's canonical 256 crop."""

    def __init__(self):
        import dlib

        from ..zoo.dlib_resnet import load_shape5

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = load_shape5()

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """5 canonical-order landmarks of the largest HOG face, or None."""
        import cv2
        import dlib

        from ..zoo.dlib_resnet import _shape_points, dlib_points_to_five

        s = min(1.0, HOG_MAX_SIDE / max(rgb.shape[:2]))
        small = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else rgb
        rects = self.detector(np.ascontiguousarray(small), 1)
        if not rects:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        full = dlib.rectangle(int(r.left() / s), int(r.top() / s), int(r.right() / s), int(r.bottom() / s))
        return dlib_points_to_five(_shape_points(self.predictor(np.ascontiguousarray(rgb), full)))


def attacker_view(rgb: np.ndarray, aligner: HogAligner, fallback: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    """(canonical crop, landmarks used, found by HOG) for ``rgb``; ``fallback`` landmarks when HOG misses."""
    from ..align import warp_face

    lm = aligner.landmarks(rgb)
    found = lm is not None
    if lm is None:
        lm = fallback
    if lm is None:
        return None, None, False
    return warp_face(rgb, lm)[0], lm, found


@dataclass
class E2EResult:
    """Attacker crops of the originals (``gallery``) and of each method's protected photos."""

    gallery: dict[str, np.ndarray] = field(default_factory=dict)
    views: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # method -> key -> crop
    # For quality: probe key -> the original photo / each method's protected photo, both warped with
    # the landmarks HOG found on the original, so they show the same face region.
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    same_place: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    detected: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # probes whose original photo has no face for HOG nor RetinaFace
    description: str = ""


def run_e2e(photos: dict[str, Path], probes: list[str], gallery: list[str], benchmark_crops: dict[str, np.ndarray],
            modes: list[str], make_cloaker: Callable[[str], object], retina=None, progress: Callable[[str], None] | None = None) -> E2EResult:
    """Protect the probe photos with each mode in ``modes`` and view everything as the attacker does.

    ``gallery`` keys are the other photos the attacker holds (originals). A gallery photo HOG
    cannot read falls back to the benchmark's own crop of it. ``make_cloaker(mode)`` returns
    the ``Cloaker`` the CLI would build for ``--mode mode``; ``retina`` (a ``FaceDetector``) is
    the last resort for finding the face in a probe's original photo.
    """
    from ..align import warp_face
    from ..protect import ProtectOptions, run

    step = progress or (lambda s: None)
    keys = sorted(set(probes) | set(gallery))
    jpgs = photo_set(photos, keys)
    hog = HogAligner()
    res = E2EResult()
    lms: dict[str, np.ndarray] = {}
    found = 0
    step("e2e: attacker aligns the originals")
    for k in keys:
        rgb = _read(jpgs[k])
        crop, lm, ok = attacker_view(rgb, hog)
        if lm is None and k in probes and retina is not None:
            faces = retina.detect(rgb)
            if faces:
                lm = np.asarray(max(faces, key=lambda f: f.area).landmarks, float).reshape(5, 2)
                crop = attacker_view(rgb, _NoHog(), lm)[0]
        found += ok
        if lm is None:
            if k in probes:
                res.dropped.append(k)
            crop = benchmark_crops[k]
        else:
            lms[k] = lm
        res.gallery[k] = crop
    live = [k for k in probes if k in lms]
    res.reference = {k: res.gallery[k] for k in live}
    res.views["original"] = {k: res.gallery[k] for k in live}
    res.same_place["original"] = dict(res.reference)
    res.detected["original"] = float(np.mean([k in lms for k in probes])) if probes else float("nan")
    with tempfile.TemporaryDirectory(prefix="facecloak-e2e-") as tmp:
        src = Path(tmp) / "in"
        for k in live:
            (src / k).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(jpgs[k], src / f"{k}.jpg")
        for mode in modes:
            step(f"e2e: protect photos ({mode})")
            out = Path(tmp) / mode
            t0 = time.perf_counter()
            summary = run(make_cloaker(mode), [src], ProtectOptions(out=out, recursive=True))
            res.seconds[mode] = (time.perf_counter() - t0) / max(1, len(live))
            failed = [r for r in summary.records if r.status == "error"]
            if failed:
                raise RuntimeError(f"e2e protect failed: {failed[0].message}")
            name = f"facecloak_{mode}"
            res.views[name], res.same_place[name], hits = {}, {}, 0
            for k in live:
                rgb = _read(out / f"{k}.jpg")
                crop, _, ok = attacker_view(rgb, hog, fallback=lms[k])
                res.views[name][k] = crop
                res.same_place[name][k] = warp_face(rgb, lms[k])[0]
                hits += ok
            res.detected[name] = hits / max(1, len(live))
    res.description = (f"{len(live)} probe photos protected as `facecloak protect` does (JPEG q{JPEG_QUALITY}, paste-back); "
                       f"photos under {FRAME_MIN_SIDE} px framed; attacker aligns with dlib HOG + 5-point shape "
                       f"({found} of {len(keys)} original photos found by HOG; the rest fall back to the benchmark crop); "
                       f"{len(res.dropped)} probes dropped (no face)")
    return res


class _NoHog:
    """An aligner that never finds a face, so ``attacker_view`` uses the given landmarks."""

    def landmarks(self, rgb):
        return None
