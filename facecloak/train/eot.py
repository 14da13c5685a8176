"""Expectation over transformations between D and EN during training.

The protection must survive what happens to a photo after it is published (blur, resizing,
JPEG). Training EN on a randomly degraded copy of D makes the network put the identity
change where those operations do not erase it: low-frequency, facial-part changes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.hiding import gaussian_lowpass

DEGRADATIONS = ("none", "blur", "resize", "quantize")


def quantize_ste(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Bit-depth reduction with a straight-through gradient:
    forward q(x) = round(x (2^b - 1)) / (2^b - 1), backward dq/dx = 1."""
    levels = 2**bits - 1
    return x + (torch.round(x * levels) / levels - x).detach()


def down_up(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize attack: downsample by ``factor`` (antialiased bilinear), then back to the input size."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(8, round(h * factor)), max(8, round(w * factor))), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def random_degrade(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, str]:
    """Apply one degradation, drawn uniformly from ``DEGRADATIONS`` for the whole batch:
    Gaussian blur σ ∈ [0.5, 1.5] px, down-up resize by f ∈ [0.35, 0.8], or 4–6-bit quantisation."""
    kind = DEGRADATIONS[int(torch.randint(len(DEGRADATIONS), (1,), generator=g))]
    u = float(torch.rand(1, generator=g))
    if kind == "blur":
        return gaussian_lowpass(x, 0.5 + u), kind
    if kind == "resize":
        return down_up(x, 0.35 + 0.45 * u), kind
    if kind == "quantize":
        return quantize_ste(x, 4 + int(u * 3)), kind
    return x, kind
