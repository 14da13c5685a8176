"""Smooth displacement fields: the shape edit shared by strong mode and the hiding network's warp head.

A warp moves pixels instead of repainting them, so a face's parts can change shape (what
recognizers read as identity) while every fine detail of the photo is kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(p: torch.Tensor, size: int) -> torch.Tensor:
    """U(p): bicubic upsampling of a (B, C, g, g) grid to (B, C, size, size)."""
    return F.interpolate(p, size=(size, size), mode="bicubic", align_corners=False)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x sampled at p + flow(p): flow (B, 2, H, W) in pixels (dx, dy); borders replicate."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device), indexing="ij")
    base = torch.stack([xs, ys], dim=-1).unsqueeze(0).to(x.dtype)
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=x.device, dtype=x.dtype)
    grid = base + flow.permute(0, 2, 3, 1).to(x.dtype) * scale
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def smooth_flow(raw: torch.Tensor, max_px: float, grid: int, size: int) -> torch.Tensor:
    """A bounded, smooth displacement field (B, 2, size, size) in pixels at ``size``:

        flow = U_size(avgpool_grid(max_px · tanh(raw)))

    tanh bounds each displacement by ``max_px``; averaging onto a grid x grid lattice and
    upsampling bicubically keeps the field smooth (no pixel-level shuffling), and both keep the
    bound up to bicubic overshoot."""
    f = torch.tanh(raw) * max_px
    if grid and grid < f.shape[-1]:
        f = F.adaptive_avg_pool2d(f, grid)
    return upsample(f, size)
