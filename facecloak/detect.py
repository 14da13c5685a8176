"""Face detection (facexlib's RetinaFace mobile0.25), alignment and crop caching.

Coordinates are always in the pixels of the image the caller passed in. Landmark order:
left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right), the
order :mod:`facecloak.align` uses.

Photos are detected on a resized copy: huge ones are shrunk so their long side is at most
``max_side`` (speed, memory), tiny ones are enlarged to ``min_side`` because RetinaFace's
smallest anchors (16 px on an 8 px stride) miss faces that fill a ~100 px frame.

Shrinking a large photo also shrinks its faces below what the detector sees: RetinaFace
mobile0.25 finds faces reliably from an eye distance of about 14 px (measured on a synthetic
group photo at threshold 0.9; 10 px finds only about 60 %). So when the first pass ran at a
scale where a face of ``min_eye`` pixels would fall under ``DETECT_EYE_PX``, a second pass
runs at the scale that brings ``min_eye`` up to it, in overlapping tiles (bounded memory), and
the two passes are merged by non-maximum suppression. A face the user asked to protect
(``--min-face``) is then never too small for the detector.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .align import warp_face

CANONICAL_SIZE = 256
#: Eye distance (pixels, at the scale detected on) from which RetinaFace mobile0.25 finds
#: faces reliably; 14 px found 24 of 24 in our synthetic group photos, 16 leaves a margin.
DETECT_EYE_PX = 16.0
#: RetinaFace mobile0.25 anchors: (stride, anchor sides) per pyramid level; box variances.
_ANCHORS = ((8, (16, 32)), (16, (64, 128)), (32, (256, 512)))
_VARIANCES = (0.1, 0.2)
_BGR_MEAN = (104.0, 117.0, 123.0)


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


def second_pass_scale(first_scale: float, min_eye: float | None, eye_px: float = DETECT_EYE_PX) -> float | None:
    """Scale of the second, finer pass, or None when the first pass already suffices.

    A face with eye distance ``min_eye`` (original pixels) has ``min_eye * s`` at scale s; the
    detector needs ``eye_px``. So s2 = min(1, eye_px / min_eye), run only when s2 > first_scale
    (never above native resolution: upsampling adds no detail).
    """
    if not min_eye or min_eye <= 0:
        return None
    s2 = min(1.0, eye_px / min_eye)
    return s2 if s2 > first_scale * 1.001 else None


def tile_grid(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis as (start, end, core_start, core_end).

    n = ceil((length - overlap) / (tile - overlap)) tiles of equal size
    ceil((length + (n - 1) overlap) / n) <= tile, spread evenly so neighbours overlap by at
    least ``overlap``. Each pixel lies in exactly one *core* (cores meet in the middle of each
    overlap), so a face whose centre is in a core and whose size is at most ``overlap`` lies
    wholly in that tile.
    """
    if length <= tile:
        return [(0, length, 0, length)]
    n = -(-(length - overlap) // (tile - overlap))
    size = -(-(length + (n - 1) * overlap) // n)
    starts = [round(k * (length - size) / (n - 1)) for k in range(n)]
    cuts = [0] + [(starts[k + 1] + starts[k] + size) // 2 for k in range(n - 1)] + [length]
    return [(a, a + size, cuts[k], cuts[k + 1]) for k, a in enumerate(starts)]


def tile_overlap(first_scale: float, second_scale: float, tile: int, eye_px: float = DETECT_EYE_PX) -> int:
    """Overlap (second-pass pixels) that holds any face the first pass may have missed.

    The first pass finds eye distances from ``eye_px / first_scale`` original pixels; a face just
    below that is about 3 eye distances wide, i.e. ``3 * eye_px * second_scale / first_scale`` at the
    second scale. At least 64 px, at most half a tile.
    """
    return int(min(tile // 2, max(64, np.ceil(3 * eye_px * second_scale / first_scale))))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first.

    IoU(a, b) = |a ∩ b| / (|a| + |b| - |a ∩ b|); a box is dropped when its IoU with a kept,
    higher-scoring box exceeds ``iou``.
    """
    order = np.argsort(-scores, kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-9) <= iou]
    return np.array(keep, dtype=np.int64)


def network_input(rgb: np.ndarray):
    """RetinaFace's input for an (H, W, 3) RGB uint8 image: x = BGR(rgb) − (104, 117, 123), as a
    (1, 3, H, W) float32 tensor (facexlib's network was trained on BGR with the channel means
    subtracted)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1], dtype=np.float32) - np.float32(_BGR_MEAN))
    return x.permute(2, 0, 1)[None]


def anchors(h: int, w: int) -> np.ndarray:
    """RetinaFace priors in pixels, (N, 3) ``cx, cy, side``, in the network's output order:
    per level, rows then columns, then each anchor side; centre = ((j + 0.5) s, (i + 0.5) s)."""
    out = []
    for stride, sides in _ANCHORS:
        fh, fw = -(-h // stride), -(-w // stride)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * stride, (np.arange(fw) + 0.5) * stride, indexing="ij")
        grid = np.stack([cx.ravel(), cy.ravel()], 1)
        per = [np.concatenate([grid, np.full((len(grid), 1), float(a))], 1) for a in sides]
        out.append(np.stack(per, 1).reshape(-1, 3))
    return np.concatenate(out).astype(np.float32)


def decode(loc: np.ndarray, landm: np.ndarray, priors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSD-style decoding in pixels: centre = c + 0.1 * loc_xy * a, size = a * exp(0.2 * loc_wh),
    landmark_k = c + 0.1 * landm_k * a, for prior centre c and side a. Returns boxes (N, 4)
    ``x0, y0, x1, y1`` and landmarks (N, 10)."""
    c, a = priors[:, :2], priors[:, 2:3]
    centre = c + loc[:, :2] * _VARIANCES[0] * a
    size = a * np.exp(loc[:, 2:] * _VARIANCES[1])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    lms = (c[:, None, :] + landm.reshape(-1, 5, 2) * _VARIANCES[0] * a[:, :, None]).reshape(-1, 10)
    return boxes, lms


class FaceDetector:
    """RetinaFace mobile0.25 (facexlib) with 5 landmarks.

    Args:
        device: torch device for the network.
        threshold: minimum confidence of a returned face.
        max_side: long side of the copy detected on when the photo is larger.
        min_side: long side of the copy detected on when the photo is smaller.
        nms: IoU threshold of non-maximum suppression.
        weights: explicit ``detection_mobilenet0.25_Final.pth``; default: the model registry.
        min_eye: smallest eye distance (original pixels) that must be found, e.g. ``--min-face``;
            large photos get a second, tiled pass at the scale this needs. None: one pass.
        tile: side of the second pass's tiles, in pixels at its scale.
    """

    def __init__(
        self,
        device: str = "cpu",
        threshold: float = 0.9,
        max_side: int = 1280,
        min_side: int = 320,
        nms: float = 0.4,
        weights: str | Path | None = None,
        min_eye: float | None = 20.0,
        tile: int = 1280,
    ):
        self.device = device
        self.threshold, self.max_side, self.min_side, self.nms = threshold, max_side, min_side, nms
        self.min_eye, self.tile = min_eye, tile
        self.net = load_retinaface(device, weights)
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB (or greyscale) uint8 image, most confident first."""
        rgb = to_rgb(rgb)
        h, w = rgb.shape[:2]
        s1 = detection_scale(h, w, self.max_side, self.min_side)
        dets = [self._detect_scaled(rgb, s1)]
        s2 = second_pass_scale(s1, self.min_eye)
        if s2 is not None:
            dets.append(self._detect_tiled(rgb, s2, tile_overlap(s1, s2, self.tile)))
        d = np.concatenate(dets)
        d = d[nms(d[:, :4], d[:, 4], self.nms)]
        return [Face(box=x[:4].astype(np.float64), score=float(x[4]), landmarks=x[5:15].astype(np.float64).reshape(5, 2)) for x in d]

    def _detect_scaled(self, rgb: np.ndarray, s: float) -> np.ndarray:
        """Detections (N, 15) ``box, score, landmarks`` in original pixels, on a copy resized by ``s``."""
        img = _resize(rgb, s)
        d = self._run(img)
        # The exact per-axis factors undo the rounding of the resized size.
        return _rescale(d, img.shape[1] / rgb.shape[1], img.shape[0] / rgb.shape[0])

    def _detect_tiled(self, rgb: np.ndarray, s: float, overlap: int) -> np.ndarray:
        """The second pass: the photo resized by ``s`` and cut into overlapping tiles. A tile keeps
        a face only when its centre is in the tile's core and its box is not cut by an inner edge."""
        img = _resize(rgb, s)
        H, W = img.shape[:2]
        found = []
        for y0, y1, cy0, cy1 in tile_grid(H, self.tile, overlap):
            for x0, x1, cx0, cx1 in tile_grid(W, self.tile, overlap):
                d = self._run(img[y0:y1, x0:x1])
                d[:, [0, 2, 5, 7, 9, 11, 13]] += x0
                d[:, [1, 3, 6, 8, 10, 12, 14]] += y0
                cx, cy = (d[:, 0] + d[:, 2]) / 2, (d[:, 1] + d[:, 3]) / 2
                keep = (cx >= cx0) & (cx < cx1) & (cy >= cy0) & (cy < cy1)
                keep &= ((x0 == 0) | (d[:, 0] > x0 + 1)) & ((x1 == W) | (d[:, 2] < x1 - 1))
                keep &= ((y0 == 0) | (d[:, 1] > y0 + 1)) & ((y1 == H) | (d[:, 3] < y1 - 1))
                found.append(d[keep])
        return _rescale(np.concatenate(found), W / rgb.shape[1], H / rgb.shape[0])

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        """One network pass at the given size: (N, 15) detections above the threshold, after NMS."""
        import torch

        h, w = rgb.shape[:2]
        x = network_input(rgb).to(self.device)
        with torch.no_grad():
            loc, conf, landm = self.net(x)
        scores = conf[0, :, 1].float().cpu().numpy()
        idx = np.flatnonzero(scores > self.threshold)
        if (h, w) not in self._priors:
            if len(self._priors) > 8:  # tiles share a few sizes; photos do not
                self._priors.clear()
            self._priors[(h, w)] = anchors(h, w)
        priors = self._priors[(h, w)][idx]
        boxes, lms = decode(loc[0].float().cpu().numpy()[idx], landm[0].float().cpu().numpy()[idx], priors)
        d = np.concatenate([boxes, scores[idx, None], lms], 1).astype(np.float64)
        return d[nms(d[:, :4], d[:, 4], self.nms)]

    def detect_batch(self, images: Iterable[np.ndarray]) -> list[list[Face]]:
        """``detect`` on each image (sizes differ, so they are run one at a time)."""
        return [self.detect(img) for img in images]


def _resize(rgb: np.ndarray, s: float) -> np.ndarray:
    import cv2

    if s == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def _rescale(d: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Detections from resized-image pixels back to original pixels (x / sx, y / sy)."""
    d = d.copy()
    d[:, [0, 2, 5, 7, 9, 11, 13]] /= sx
    d[:, [1, 3, 6, 8, 10, 12, 14]] /= sy
    return d


def load_retinaface(device: str = "cpu", weights: str | Path | None = None):
    """RetinaFace mobile0.25 in facexlib's layout (:mod:`facecloak.models.retinaface`, which skips
    facexlib's 2–3-s torchvision import) with the registry weights, loaded strictly, no download."""
    import torch

    from .models.retinaface import RetinaFaceMobile
    from .zoo.registry import resolve

    path = resolve("retinaface_mobile0.25", path=weights)
    net = RetinaFaceMobile()
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
