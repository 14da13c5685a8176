"""Aligned 256x256 crops of the offline pool, cached once per split."""
from __future__ import annotations

from pathlib import Path

import torch

from ..cache import cache_dir


def offline_crops(split: str, device: str = "cpu") -> Path:
    """Folder of canonical crops of the offline ``train`` or ``eval`` split (built on first use).

    Eval crops keep the identity as a sub-folder: ``<person>/<image>.png``.
    """
    from ..detect import FaceDetector, prepare_images
    from .offline import eval_identities, train_images

    dst = cache_dir() / "crops" / f"offline-{split}"
    if any(dst.rglob("*.png")):
        return dst
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    detector = FaceDetector(device)
    if split == "train":
        # Covers need no labels: every face of a group photo is a training crop.
        crop_all_faces(train_images(), dst, detector, min_face=24)
    else:
        for person, paths in sorted(eval_identities().items()):
            prepare_images(paths, dst / person, detector, min_face=12)
    return dst


NBA_MIN_FACE = 85  # px, box side: most NBA headshots are 40-70 px faces, too blurry as 256 covers


def nba_crops(device: str = "cpu") -> Path:
    """Canonical crops of the NBA headshots whose face is at least ``NBA_MIN_FACE`` px (cached)."""
    from ..detect import FaceDetector
    from .offline import fetch_nba_headshots

    dst = cache_dir() / "crops" / "nba"
    if not any(dst.rglob("*.png")):
        src = fetch_nba_headshots()
        crop_all_faces(sorted(src.iterdir()), dst, FaceDetector(device), min_face=NBA_MIN_FACE)
    return dst


def stylegan_covers_dir(seed: int = 1, truncation: float = 0.7) -> Path:
    """Where ``facecloak data covers`` caches canonical StyleGAN faces for ``(seed, truncation)``."""
    return cache_dir() / "crops" / f"stylegan-seed{seed}-t{truncation:g}"


def real_training_pool(device: str = "cpu") -> list[Path]:
    """Every real face training may see: the offline training split and the NBA headshots >= 85 px.
    The bank is filtered against all of them, and never against the evaluation faces (issue 13)."""
    from ..train.data import list_crops

    return list_crops(offline_crops("train", device)) + list_crops(nba_crops(device))


def read_crops(folder: Path) -> torch.Tensor:
    """All crops of a folder as (N, 3, 256, 256) float in [0, 1]."""
    from ..train.data import list_crops, read_rgb, to_tensor

    paths = list_crops(folder)  # recursive
    return torch.stack([to_tensor(read_rgb(p)) for p in paths]) if paths else torch.zeros(0, 3, 256, 256)


def crop_all_faces(paths, dst: Path, detector, min_face: int = 24) -> list[Path]:
    """Write every face (box side >= min_face px) of every image as ``<stem>_<k>.png``."""
    from PIL import Image

    from ..detect import align_faces
    from ..imageio import ImageError, load_image

    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for p in map(Path, paths):
        try:
            rgb = load_image(p).rgb
        except ImageError:
            continue
        faces = [f for f in detector.detect(rgb) if f.size >= min_face]
        if not faces:
            continue
        crops, _ = align_faces(rgb, faces)
        for k, crop in enumerate(crops):
            out = dst / f"{p.parent.name}__{p.stem}_{k}.png"
            Image.fromarray(crop).save(out)
            written.append(out)
    return written


def covers_for_training(src: Path, device: str = "cpu") -> tuple[Path, Path | None]:
    """Turn what the user passed to ``facecloak train --covers`` into (train crops, val crops or None).

    * a CelebA root (``img_align_celeba/`` inside): its split (official partition file, else the
      paper's random 3,000-image hold-out), each side detected + aligned once into the cache;
    * a folder of 256x256 images: used as canonical crops directly (random hold-out later);
    * any other image folder: detected + aligned once into the cache.
    """
    import hashlib

    from PIL import Image

    from ..detect import FaceDetector, prepare_images
    from .datasets import celeba_split, list_images

    src = Path(src)
    tag = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]
    dst = cache_dir() / "crops" / f"{src.name}-{tag}"
    if (src / "img_align_celeba").is_dir():
        train, val = celeba_split(src)
        for name, paths in (("train", train), ("val", val)):
            if not any((dst / name).glob("*.png")):
                prepare_images(paths, dst / name, FaceDetector(device))
        return dst / "train", dst / "val"
    images = list_images(src)
    if not images:
        raise FileNotFoundError(f"no images in {src}")
    with Image.open(images[0]) as im:
        if im.size == (256, 256):
            return src, None
    if not any(dst.glob("*.png")):
        prepare_images(images, dst, FaceDetector(device))
    return dst, None
