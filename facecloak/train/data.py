"""Training data: canonical 256 cover crops with augmentation, and fake-identity features.

Covers need no identity labels, so every face crop counts. Augmentation is heavy because
the offline pool is small: left-right flips, small affine jitter, colour jitter, and
greyscale as its own case (ORL is greyscale; users' photos mostly are not).
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"}


def list_crops(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXTS)


def read_rgb(path: Path, size: int = 256) -> np.ndarray:
    """Read an image as (size, size, 3) uint8 RGB, resizing if it is not already that size."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        return np.asarray(im, dtype=np.uint8).copy()


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)


def augment(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """Random flip, affine jitter (±4° rotation, ±4% scale, ±6 px shift), colour jitter, greyscale.

    Colour jitter: x' = clip((x - m) c + m + b), contrast c ∈ [0.8, 1.2] around the mean m,
    brightness b ∈ [-20, 20]; greyscale with p = 0.2 (luma replicated to 3 channels).
    """
    import cv2

    out = rgb
    if rng.random() < 0.5:
        out = out[:, ::-1]
    s = out.shape[0]
    ang, sc = rng.uniform(-4, 4), rng.uniform(0.96, 1.04)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), ang, sc)
    m[:, 2] += [rng.uniform(-6, 6), rng.uniform(-6, 6)]
    out = cv2.warpAffine(np.ascontiguousarray(out), m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x = out.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-20, 20)
    if rng.random() < 0.2:
        x = np.repeat((x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=2)
    return np.clip(x, 0, 255).astype(np.uint8)


def soften(rgb: np.ndarray, rng: random.Random, lo: float = 0.3, hi: float = 0.7) -> np.ndarray:
    """A sharp crop made to look like an enlarged small face: shrink by f ~ U(lo, hi) (area
    average), then enlarge back (bicubic), as aligning a face of f · 256 px to the 256 template does."""
    import cv2

    s = rgb.shape[0]
    n = max(8, round(s * rng.uniform(lo, hi)))
    small = cv2.resize(np.ascontiguousarray(rgb), (n, n), interpolation=cv2.INTER_AREA)
    return np.clip(cv2.resize(small, (s, s), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


class CoverDataset(Dataset):
    """Canonical 256 face crops; augmented when ``train`` is true, as-is for validation.
    ``soft``: the share of training covers also passed through :func:`soften`."""

    def __init__(self, paths: list[Path], train: bool = True, seed: int = 0, size: int = 256, soft: float = 0.0):
        self.paths, self.train, self.seed, self.size, self.soft = list(paths), train, seed, size, soft
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        rgb = read_rgb(self.paths[i], self.size)
        if self.train:
            rng = random.Random(hash((self.seed, self.epoch, i)) & 0xFFFFFFFF)
            rgb = augment(rgb, rng)
            if self.soft and rng.random() < self.soft:
                rgb = soften(rgb, rng)
        return to_tensor(rgb)


def split_train_val(paths: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Seeded random hold-out: at least one validation image, at least one training image."""
    paths = sorted(paths)
    rng = random.Random(seed)
    idx = list(range(len(paths)))
    rng.shuffle(idx)
    n_val = min(max(1, round(len(paths) * val_fraction)), len(paths) - 1)
    val = sorted(paths[i] for i in idx[:n_val])
    train = sorted(paths[i] for i in idx[n_val:])
    return train, val


class FakeBank:
    """EN features of fake faces E, each stored unflipped and flipped (E is flipped at random).

    ``sample(n, generator)`` draws n features; the flip is chosen independently of the
    cover's flip, as in the paper's augmentation.
    """

    def __init__(self, feats: torch.Tensor, feats_flipped: torch.Tensor):
        self.feats, self.feats_flipped = feats, feats_flipped

    def __len__(self) -> int:
        return self.feats.shape[0]

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self), (n,), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        return torch.where(flip[:, None], self.feats_flipped[idx], self.feats[idx])

    @classmethod
    @torch.no_grad()
    def from_images(cls, faces: torch.Tensor, en, device, batch: int = 32) -> "FakeBank":
        """faces: (N, 3, 256, 256) canonical fake faces in [0, 1]."""
        out, out_f = [], []
        for i in range(0, faces.shape[0], batch):
            x = faces[i : i + batch].to(device)
            out.append(en(x).cpu())
            out_f.append(en(x.flip(-1)).cpu())
        return cls(torch.cat(out), torch.cat(out_f))
