"""The five training losses of Hanawa et al. 2024, section 3.2, one small function each.

All images are RGB in [0, 1], shape (B, 3, H, W); features are L2-normalised (B, d).
Each function returns the batch mean as a scalar tensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def rec_loss(cover: torch.Tensor, deid: torch.Tensor) -> torch.Tensor:
    """L_rec = mean over pixels of (C - D)^2: the squared L2 norm, per pixel and channel.

    The paper's equation did not survive in our copy; MSE is the deep-steganography
    choice it builds on and is what PSNR measures.
    """
    return F.mse_loss(deid, cover)


def ssim_loss(cover: torch.Tensor, deid: torch.Tensor) -> torch.Tensor:
    """L_ssim = 1 − SSIM(C, D): the evaluation's SSIM (11×11 Gaussian window, σ 1.5, per RGB channel;
    ``facecloak.eval.metrics.ssim_torch``), batch mean. Not one of the paper's five terms: MSE prices
    every changed pixel alike, SSIM prices changed local structure (a moved edge, new texture) above
    a smooth shading change. Off unless ``--lambda-ssim`` is set."""
    from ..eval.metrics import ssim_torch

    with torch.autocast(cover.device.type, enabled=False):  # variances as E[x²] − μ² need fp32
        return 1 - ssim_torch(cover.float(), deid.float()).mean()


def window_covers(k: int, h: int) -> bool:
    """Whether the four corner k×k windows of an h×h image cover it: h/2 ≤ k < h."""
    return h / 2 <= k < h


def random_windows(cover: torch.Tensor, deid: torch.Tensor, k: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same k×k window of each face's C and D, and its importance weights.

    Each face's corner (y, x) is drawn from g, each coordinate uniform on {0, H − k}: one of the
    four corner windows, which together cover the image when H/2 ≤ k < H. A pixel p lies in a window with
    probability P(p) = P_y · P_x, each ½ near that edge and 1 in the middle band both windows
    share. The returned weights w(p) = (k/H)² / P(p), shape (B, 1, k, k), make any spatial-mean
    loss L = (1/H²) Σ_p ℓ(p) an unbiased estimate from the window alone:

        E[(1/k²) Σ_{p ∈ window} w(p) ℓ(p)] = (1/k²) Σ_p P(p) w(p) ℓ(p) = L,

    up to the window's own border (a convolution there sees zero padding, not the neighbouring
    pixels). Weights range over (k/H)² · {1, 2, 4}; a VGG pass on k² of H² pixels costs about
    k²/H² of the whole one (``weights_at`` brings w to a feature map's grid).
    """
    b, _, h, w = cover.shape
    if not (window_covers(k, h) and h == w):
        raise ValueError(f"window {k} must be at least half of the square image ({h}x{w}) and smaller, so the corners cover it")
    ys = (torch.randint(0, 2, (b,), generator=g) * (h - k)).tolist()
    xs = (torch.randint(0, 2, (b,), generator=g) * (w - k)).tolist()
    p_axis = torch.ones(h)
    p_axis[: h - k] = 0.5
    p_axis[k:] = 0.5
    weight = (k / h) ** 2 / torch.outer(p_axis, p_axis).to(cover.device)

    def crop(t: torch.Tensor) -> torch.Tensor:
        out = torch.stack([t[i, :, y : y + k, x : x + k] for i, (y, x) in enumerate(zip(ys, xs))])
        return out.contiguous(memory_format=torch.channels_last) if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() else out

    return crop(cover), crop(deid), crop(weight.expand(b, 1, h, w))


def weights_at(weight: torch.Tensor | None, fmap: torch.Tensor) -> torch.Tensor | float:
    """A (B, 1, k, k) pixel weight map on ``fmap``'s grid (area averaging: a feature position takes
    the mean weight of the pixels it spans); None → 1."""
    if weight is None:
        return 1.0
    return F.interpolate(weight, size=fmap.shape[-2:], mode="area") if weight.shape[-2:] != fmap.shape[-2:] else weight


def perc_loss(feat_cover: torch.Tensor, feat_deid: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L_perc = mean (f_vgg(C) - f_vgg(D))^2 over the final VGG feature map (Johnson et al.);
    with ``weight`` (``random_windows``), mean of w · (f_vgg(C) − f_vgg(D))², w on the map's grid."""
    if weight is None:
        return F.mse_loss(feat_deid, feat_cover)
    return (weights_at(weight, feat_deid) * (feat_deid - feat_cover) ** 2).mean()


def near_loss(feat_embed: torch.Tensor, feat_deid: torch.Tensor) -> torch.Tensor:
    """L_near = 1 - cos(f_en(E), f_en(D)): pulls D's identity toward the embedded face E."""
    return (1 - F.cosine_similarity(feat_embed, feat_deid, dim=1)).mean()


def far_loss(feat_cover: torch.Tensor, feat_deid: torch.Tensor, margin: float | None = None) -> torch.Tensor:
    """L_far = cos(f_en(C), f_en(D)): pushes D's identity away from the cover's.

    With a ``margin`` m it is the hinge max(0, cos - m) (PerceptFace-style): once D is
    already far enough from C the term stops pushing, and the image terms take over.
    """
    cos = F.cosine_similarity(feat_cover, feat_deid, dim=1)
    return (cos if margin is None else F.relu(cos - margin)).mean()


def mid_loss(map_cover: torch.Tensor, map_deid: torch.Tensor) -> torch.Tensor:
    """L_mid = cos(vec h(C), vec h(D)) over EN's intermediate feature map h (the whole map as one
    vector per face): pushes D away from C where recognizers still share features, below the
    identity embedding (the intermediate-level attacks ILA/FIA transfer better to other networks
    than attacks on the last layer). Not one of the paper's five terms; off unless ``--lambda-mid``."""
    return F.cosine_similarity(map_cover.flatten(1).float(), map_deid.flatten(1).float(), dim=1).mean()


@dataclass
class LossWeights:
    """λ for each term; defaults are the paper's final (fake-E) setting, section 4.7."""

    rec: float = 1.0
    perc: float = 1.0
    lpips: float = 1.0
    near: float = 0.125
    far: float = 0.125
    far_margin: float | None = None  # hinge on L_far; None = the paper's plain cosine
    ssim: float = 0.0  # λ of 1 − SSIM (not in the paper; 0 = off)
    mid: float = 0.0  # λ of L_mid, EN's intermediate features (not in the paper; 0 = off)


def total_loss(terms: dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    """L = λ_rec L_rec + λ_perc L_perc + λ_lpips L_lpips + λ_near L_near + λ_far L_far (+ λ_ssim L_ssim + λ_mid L_mid)."""
    return sum(getattr(w, k) * v for k, v in terms.items() if k in LOSS_TERMS)


LOSS_TERMS = ("rec", "perc", "lpips", "near", "far", "ssim", "mid")
