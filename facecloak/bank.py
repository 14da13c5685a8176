"""The bank of fake identities: EN features of generated faces, far from every real face.

GFSG2-style: the paper embeds features of StyleGAN2 faces of people who do not exist. The
shipped bank uses the StyleGAN2-FFHQ generator of the model zoo (``mobilestylegan_ffhq``; the
64-px DCGAN stays as an option), embeds the faces with EN (ArcFace), and keeps a feature only
when its cosine to every real training face is below ``far_cos`` (0.2), so no real person's
identity is ever written into a photo.
"""
from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def embed_batched(en, faces: torch.Tensor, batch: int = 32) -> torch.Tensor:
    return torch.cat([en(faces[i : i + batch]) for i in range(0, faces.shape[0], batch)])


def far_from_all(fake: torch.Tensor, real: torch.Tensor, far_cos: float = 0.2) -> torch.Tensor:
    """Boolean mask over fakes: max_j cos(fake_i, real_j) < far_cos (features L2-normalised)."""
    if real.numel() == 0:
        return torch.ones(fake.shape[0], dtype=torch.bool)
    return (fake @ real.T).max(dim=1).values < far_cos


def build_bank(en, generator, real_paths, n_candidates: int = 2048, far_cos: float = 0.2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """DCGAN fakes: generate ``n_candidates`` faces, embed them, keep those far from the real crops
    ``real_paths`` (:func:`select_far`). Returns (features (K, d), kept indices (K,), stats)."""
    from .zoo.dcgan import fake_faces_canonical

    fakes = fake_faces_canonical(generator, n_candidates, seed=seed)
    return select_far(embed_batched(en, fakes), embed_paths(en, real_paths), far_cos, {"source": "dcgan_faces", "seed": seed})


@torch.no_grad()
def embed_paths(en, paths, batch: int = 64) -> torch.Tensor:
    """EN features of canonical crops read ``batch`` files at a time, so thousands of faces never
    sit in memory together (6,500 crops as float tensors would take 5 GB)."""
    from .train.data import read_rgb, to_tensor

    paths = list(paths)
    chunks = [en(torch.stack([to_tensor(read_rgb(p)) for p in paths[i : i + batch]])) for i in range(0, len(paths), batch)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 512)


def build_bank_from_paths(en, fake_paths, real_paths, far_cos: float = 0.2, info: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """StyleGAN (or any) fakes cached as crop files: embed both sides streamed (:func:`embed_paths`),
    then :func:`select_far`. Returns (features (K, d), kept indices among ``fake_paths`` (K,), stats)."""
    return select_far(embed_paths(en, fake_paths), embed_paths(en, real_paths), far_cos, info)


def select_far(f_fake: torch.Tensor, f_real: torch.Tensor, far_cos: float = 0.2, info: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Keep fake i iff max_j cos(f_fake_i, f_real_j) < far_cos; return (kept features, their indices, stats)."""
    keep = far_from_all(f_fake, f_real, far_cos)
    idx = torch.nonzero(keep).flatten()
    stats = {
        "candidates": int(f_fake.shape[0]), "kept": int(keep.sum()), "real_faces": int(f_real.shape[0]), "far_cos": far_cos,
        **(info or {}),
        "mean_pairwise_cos_kept": float((f_fake[idx] @ f_fake[idx].T).mean()) if len(idx) else None,
    }
    return f_fake[idx].contiguous(), idx, stats


def save_bank(path: Path, feats: torch.Tensor, idx: torch.Tensor, stats: dict) -> None:
    import json

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"features": feats.float().contiguous(), "generator_index": idx.to(torch.int64)}, str(path), metadata={"stats": json.dumps(stats)})


class BankError(ValueError):
    """A user's bank file is not a usable bank (wrong keys, shape or values)."""


def default_bank_path() -> Path:
    """Where ``facecloak data build-bank`` writes by default: the user's cache, never the shipped file
    (whose sha256 ``protect`` checks)."""
    from .cache import cache_dir

    return cache_dir() / "banks" / "fake_bank.safetensors"


def is_shipped_bank(path: str | Path) -> bool:
    """True when ``path`` is the bank shipped with facecloak."""
    from .zoo.hiding import BANK_FILE, bundled_dir

    return Path(path).resolve() == (bundled_dir() / BANK_FILE).resolve()


def load_user_bank(path: str | Path, dim: int = 512) -> torch.Tensor:
    """A user's own bank (``--bank``), checked for shape rather than against our hash.

    It must be a safetensors file with ``features`` of shape (K, dim), K >= 1, finite, no zero
    rows (each is L2-normalised when used). Raises ``BankError`` naming the file and the problem.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BankError(f"--bank {path}: no such file. Build one with `facecloak data build-bank --out {path}`.")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BankError(f"--bank {path}: not a readable safetensors file ({e}).") from None
    feats = tensors.get("features")
    if feats is None:
        raise BankError(f"--bank {path}: no 'features' tensor (has: {', '.join(sorted(tensors)) or 'nothing'}).")
    if feats.ndim != 2 or feats.shape[0] < 1 or feats.shape[1] != dim:
        raise BankError(f"--bank {path}: 'features' has shape {tuple(feats.shape)}; expected (K, {dim}) ArcFace features.")
    feats = feats.float()
    if not torch.isfinite(feats).all() or (feats.norm(dim=1) == 0).any():
        raise BankError(f"--bank {path}: 'features' holds NaN, infinite or all-zero rows.")
    return feats
