"""Expectation over transformations between D and EN during training.

The protection must survive what happens to a photo after it is published (blur, resizing,
JPEG). Training EN on a randomly degraded copy of D makes the network put the identity
change where those operations do not erase it: low-frequency, facial-part changes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.hiding import gaussian_lowpass

DEGRADATIONS = ("none", "blur", "resize", "quantize")  # the default draw (v0.3-v0.7 recipes)
KINDS = (*DEGRADATIONS, "photo")  # every kind ``random_degrade`` knows


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


def photo(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """What the end-to-end path does to a face: another alignment (rotation ±3°, scale ±4 %, shift
    ±2 % of the side: an attacker's detector lands elsewhere), the face's own small size in the
    photo (down-up by f ∈ [0.25, 0.6]: a 256-px crop of a 64–150 px face) and 6-bit quantisation
    (a lossy save). ``u``: five uniform [0, 1) numbers."""
    from ..strong import similarity

    side = x.shape[-1]
    y = similarity(x, 3 * (2 * float(u[0]) - 1), 1 + 0.04 * (2 * float(u[1]) - 1), 0.02 * side * (2 * float(u[2]) - 1), 0.02 * side * (2 * float(u[3]) - 1))
    return quantize_ste(down_up(y, 0.25 + 0.35 * float(u[4])), 6)


def random_degrade(x: torch.Tensor, g: torch.Generator, kinds: tuple[str, ...] = DEGRADATIONS) -> tuple[torch.Tensor, str]:
    """Apply one degradation, drawn uniformly from ``kinds`` for the whole batch (a kind listed
    twice is drawn twice as often): Gaussian blur σ ∈ [0.5, 1.5] px, down-up resize by
    f ∈ [0.35, 0.8], 4–6-bit quantisation, or ``photo`` (:func:`photo`)."""
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=g))]
    if kind == "photo":
        return photo(x, torch.rand(5, generator=g)), kind
    u = float(torch.rand(1, generator=g))
    if kind == "blur":
        return gaussian_lowpass(x, 0.5 + u), kind
    if kind == "resize":
        return down_up(x, 0.35 + 0.45 * u), kind
    if kind == "quantize":
        return quantize_ste(x, 4 + int(u * 3)), kind
    return x, kind
