"""Face detection (RetinaFace mobile0.25 through facexlib), alignment and crop caching.

Coordinates are always in the pixels of the image the caller passed in. Landmark order:
left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right), the
order :mod:`facecloak.align` uses.

Photos are detected on a resized copy: huge ones are shrunk so their long side is at most
``max_side`` (speed, memory), tiny ones are enlarged to ``min_side`` because RetinaFace's
smallest anchors (16 px on an 8 px stride) miss faces that fill a ~100 px frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .align import warp_face

CANONICAL_SIZE = 256


@dataclass
class Face:
    """One detection, in original-image pixel coordinates.

    Attributes:
        box: (4,) float ``x0, y0, x1, y1``.
        score: detector confidence in [0, 1].
        landmarks: (5, 2) float ``(x, y)``: left eye, right eye, nose, left/right mouth corner.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """Shorter side of the box, in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def to_rgb(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> (H, W, 3) RGB; grey is stacked."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {img.shape}")
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return img[..., :3]


def detection_scale(h: int, w: int, max_side: int, min_side: int) -> float:
    """Factor the image is resized by before detection: long side clamped to [min_side, max_side]."""
    long = max(h, w)
    if long > max_side:
        return max_side / long
    if long < min_side:
        return min_side / long
    return 1.0


class FaceDetector:
    """RetinaFace mobile0.25 (facexlib) with 5 landmarks.

    Args:
        device: torch device for the network.
        threshold: minimum confidence of a returned face.
        max_side: long side of the copy detected on when the photo is larger.
        min_side: long side of the copy detected on when the photo is smaller.
        nms: IoU threshold of non-maximum suppression.
        weights: explicit ``detection_mobilenet0.25_Final.pth``; default: the model registry.
    """

    def __init__(
        self,
        device: str = "cpu",
        threshold: float = 0.9,
        max_side: int = 1280,
        min_side: int = 320,
        nms: float = 0.4,
        weights: str | Path | None = None,
    ):
        self.device = device
        self.threshold, self.max_side, self.min_side, self.nms = threshold, max_side, min_side, nms
        self.net = load_retinaface(device, weights)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB (or greyscale) uint8 image, most confident first."""
        import cv2
        import torch

        rgb = to_rgb(rgb)
        h, w = rgb.shape[:2]
        s = detection_scale(h, w, self.max_side, self.min_side)
        img = rgb
        if s != 1.0:
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            img = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
        # The exact per-axis factors undo the rounding of the resized size.
        sx, sy = img.shape[1] / w, img.shape[0] / h
        bgr = np.ascontiguousarray(img[..., ::-1])  # facexlib's network was trained on BGR
        with torch.no_grad():
            dets = self.net.detect_faces(bgr, conf_threshold=self.threshold, nms_threshold=self.nms)
        faces = []
        for d in dets:
            box = d[:4].astype(np.float64) / [sx, sy, sx, sy]
            lm = d[5:15].astype(np.float64).reshape(5, 2) / [sx, sy]
            faces.append(Face(box=box, score=float(d[4]), landmarks=lm))
        return sorted(faces, key=lambda f: -f.score)

    def detect_batch(self, images: Iterable[np.ndarray]) -> list[list[Face]]:
        """``detect`` on each image (sizes differ, so they are run one at a time)."""
        return [self.detect(img) for img in images]


def load_retinaface(device: str = "cpu", weights: str | Path | None = None):
    """facexlib's RetinaFace mobile0.25 with the registry weights, loaded strictly, no download."""
    import torch
    from facexlib.detection.retinaface import RetinaFace

    from .zoo.registry import resolve

    path = resolve("retinaface_mobile0.25", path=weights)
    net = RetinaFace(network_name="mobile0.25", half=False, device=device)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def align_faces(rgb: np.ndarray, faces: list[Face]) -> tuple[np.ndarray, np.ndarray]:
    """Warp each face to the canonical 256 template.

    Returns crops (N, 256, 256, 3) uint8 and the image->crop matrices (N, 2, 3).
    """
    rgb = to_rgb(rgb)
    crops = np.zeros((len(faces), CANONICAL_SIZE, CANONICAL_SIZE, 3), np.uint8)
    mats = np.zeros((len(faces), 2, 3), np.float64)
    for i, f in enumerate(faces):
        crops[i], mats[i] = warp_face(rgb, f.landmarks, "canonical256")
    return crops, mats


def _read_rgb(path: Path) -> np.ndarray:
    from .imageio import load_image

    return load_image(path).rgb


def _crop_name(path: Path, taken: set[str]) -> str:
    """Unique, deterministic PNG name from the last path parts (``orl/s1/1.pgm`` -> ``orl__s1__1``)."""
    base = "__".join([*path.parent.parts[-2:], path.stem])
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name + ".png"


def prepare_images(
    paths: Iterable[str | Path], dst_dir: str | Path, detector: FaceDetector, min_face: int = 24
) -> tuple[list[Path], list[Path]]:
    """Cache the largest face of each image as a canonical 256x256 PNG crop in ``dst_dir``.

    Images with no face of at least ``min_face`` px (box side), or that cannot be read, are
    returned in ``rejected`` rather than raising: one bad photo must not stop a data set.
    Returns ``(written, rejected)``.
    """
    from PIL import Image

    from .imageio import ImageError

    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rejected: list[Path] = []
    taken: set[str] = set()
    for p in map(Path, paths):
        try:
            rgb = _read_rgb(p)
        except ImageError:
            rejected.append(p)
            continue
        faces = [f for f in detector.detect(rgb) if f.size >= min_face]
        if not faces:
            rejected.append(p)
            continue
        crops, _ = align_faces(rgb, [max(faces, key=lambda f: f.area)])
        out = dst / _crop_name(p, taken)
        Image.fromarray(crops[0]).save(out)
        written.append(out)
    return written, rejected


def prepare_folder(
    src_dir: str | Path, dst_dir: str | Path, detector: FaceDetector, min_face: int = 24
) -> tuple[list[Path], list[Path]]:
    """:func:`prepare_images` on every image under ``src_dir`` (recursively)."""
    from .data.datasets import list_images

    return prepare_images(list_images(src_dir), dst_dir, detector, min_face)
