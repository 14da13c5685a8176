"""The impostor set behind the FAR-based thresholds: training data only, >= 100,000 pairs.

Faces: every *labelled* face of the offline training split (ORL s1-s30 and the single colour
portraits; group-photo faces are left out because who is who across photos is unknown) plus
``n_fakes`` generated faces, each its own identity. Every pair of faces of different identities
is an impostor pair: real-real of different people, real-fake and fake-fake. With about 320
real faces and 320 fakes that is about 200,000 pairs.

Nothing here reads the evaluation identities, so a threshold fitted on it is a property of the
recognizer and the training data (split hygiene, issue 13) and can be shipped as ``--verify``'s.

The fake source is pluggable (:data:`FAKE_SOURCES`): ``dcgan`` (the zoo's DCGAN) now, and
``stylegan`` once ``facecloak.zoo.stylegan`` offers ``fake_faces_canonical(generator, n, seed)``
like ``facecloak.zoo.dcgan`` does.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..cache import cache_dir
from . import protocols as P
from .thresholds import FAR_TARGET, far_threshold, unit

MIN_PAIRS = 100_000
UNLABELLED = "unlabelled"
EMB_VERSION = 2  # bump when a recognizer's preprocessing changes (v2: SFace fed RGB)


def _dcgan(n: int, seed: int) -> torch.Tensor:
    from ..zoo.dcgan import fake_faces_canonical, load_dcgan

    return fake_faces_canonical(load_dcgan(), n, seed)


def _stylegan(n: int, seed: int) -> torch.Tensor:
    from ..zoo import stylegan

    if not hasattr(stylegan, "fake_faces_canonical"):
        raise RuntimeError("facecloak.zoo.stylegan has no fake_faces_canonical(generator, n, seed) yet; use --impostor-fakes dcgan")
    return stylegan.fake_faces_canonical(stylegan.load_stylegan(), n, seed)


#: name -> fn(n, seed) giving n canonical 256 fake faces, float (n, 3, 256, 256) in [0, 1].
FAKE_SOURCES: dict[str, Callable[[int, int], torch.Tensor]] = {"dcgan": _dcgan, "stylegan": _stylegan}


@dataclass
class ImpostorSet:
    faces: list[np.ndarray]  # (256, 256, 3) uint8 canonical crops
    labels: list[str]
    tag: str  # identifies the content, for the embedding cache
    description: str

    @property
    def pairs(self) -> int:
        return int(P.impostor_scores(np.zeros((len(self.labels),) * 2, np.int8), self.labels).size)


def person_of_crop(path: Path) -> str:
    """Training crops are named ``<person>__<photo>_<k>.png`` (``data.crops.crop_all_faces``)."""
    return path.name.split("__", 1)[0] if "__" in path.name else UNLABELLED


def fakes_needed(labels: list[str], min_pairs: int | None = None) -> int:
    """Smallest n with R + n N + n (n - 1) / 2 >= min_pairs, where N real faces of the given
    labels form R impostor pairs among themselves and every fake is its own identity."""
    min_pairs = MIN_PAIRS if min_pairs is None else min_pairs
    n_real = len(labels)
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    r = (n_real * n_real - int((counts**2).sum())) // 2
    n = 0
    while r + n * n_real + n * (n - 1) // 2 < min_pairs:
        n += 1
    return n


def training_impostor_set(fakes: str = "dcgan", n_fakes: int = 320, seed: int = 7) -> ImpostorSet:
    """Labelled training crops + fakes from ``FAKE_SOURCES[fakes]`` (seeded): ``n_fakes`` of them,
    or more when that is needed to reach ``MIN_PAIRS`` impostor pairs."""
    from ..data.crops import offline_crops
    from ..train.data import list_crops, read_rgb

    if fakes not in FAKE_SOURCES:
        raise KeyError(f"unknown fake source {fakes!r}; choose from {', '.join(FAKE_SOURCES)}")
    paths = [p for p in list_crops(offline_crops("train")) if person_of_crop(p) != UNLABELLED]
    faces = [read_rgb(p) for p in paths]
    labels = [person_of_crop(p) for p in paths]
    n_fakes = max(n_fakes, fakes_needed(labels))
    fake = (FAKE_SOURCES[fakes](n_fakes, seed).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    faces += list(fake)
    labels += [f"{fakes}:{i}" for i in range(len(fake))]
    h = hashlib.sha256(f"v{EMB_VERSION}:{fakes}:{n_fakes}:{seed}".encode())
    for p in paths:
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    s = ImpostorSet(faces, labels, h.hexdigest()[:16], "")
    s.description = (f"{len(paths)} labelled training faces of {len(set(labels[: len(paths)]))} people + {len(fake)} {fakes} fakes; "
                     f"{s.pairs} impostor pairs (every pair of different identities)")
    return s


def impostor_embeddings(name: str, model, iset: ImpostorSet, embed: Callable) -> np.ndarray:
    """Raw embeddings of the impostor faces for recognizer ``name``, cached by content tag."""
    root = cache_dir() / "eval-emb" / name
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"impostors-{iset.tag}.npy"
    if path.exists():
        return np.load(path)
    emb = embed(model, iset.faces)
    np.save(path, emb)
    return emb


def fit_far_threshold(emb: np.ndarray, labels: list[str], far: float = FAR_TARGET) -> tuple[float, int]:
    """Cosine threshold at ``far`` over all impostor pairs of ``emb`` (raw rows): (threshold, #pairs)."""
    e = unit(emb)
    scores = P.impostor_scores(e @ e.T, labels)
    if scores.size < MIN_PAIRS:
        import warnings

        warnings.warn(f"only {scores.size} impostor pairs (< {MIN_PAIRS}): the FAR {far} threshold is coarse", stacklevel=2)
    return far_threshold(scores, far), int(scores.size)


def fit_verify_thresholds(names: tuple[str, ...] = ("facenet_casia", "sface", "dlib_resnet", "arcface_mbf"),
                          fakes: str = "dcgan", device: str = "cpu") -> dict[str, float]:
    """The FAR 1e-3 cosine thresholds that ``protect --verify`` ships (``pretrained.VERIFY_THRESHOLDS``).

    Fitted on the training impostor set only. Run ``python -m facecloak.eval.impostors`` to refit.
    """
    from ..pretrained import load_recognizer
    from .runner import embed

    iset = training_impostor_set(fakes)
    out = {}
    for name in names:
        model = load_recognizer(name, device)
        t = fit_far_threshold(impostor_embeddings(name, model, iset, embed), iset.labels)[0]
        out[name] = math.ceil(t * 1000) / 1000  # rounded up, so the FAR stays <= 1e-3
    return out


if __name__ == "__main__":
    print(fit_verify_thresholds())
