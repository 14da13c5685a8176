"""``--mode strong``: a few gradient steps per face on top of the hiding network's output.

Starting from D = HN(C, f_E), minimise the paper's identity terms plus its pixel term,

    L(D') = λ_near (1 - cos(f_en(E), f_en(T(D')))) + λ_far cos(f_en(C), f_en(T(D'))) + λ_rec ||D' - C||²,

over D' with ||D' - D||_∞ ≤ eps (so quality stays near the network's). T is a random
blur/rescale drawn at every step (expectation over transformation): the refinement must
survive the blur and JPEG-like smoothing the robustness attacks apply, instead of fitting
pixel noise that a blur removes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .train import losses as L


def random_smoothing(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Identity, Gaussian blur (σ ∈ [0.5, 2]) or down-up rescale (factor ∈ [0.5, 0.9]), at random."""
    kind = int(torch.randint(3, (1,), generator=g))
    if kind == 1:
        sigma = 0.5 + 1.5 * float(torch.rand(1, generator=g))
        r = torch.arange(-3, 4, dtype=x.dtype, device=x.device)
        k = torch.exp(-(r**2) / (2 * sigma**2))
        k = k / k.sum()
        x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="reflect"), k.view(1, 1, 1, 7).expand(3, 1, 1, 7), groups=3)
        return F.conv2d(F.pad(x, (0, 0, 3, 3), mode="reflect"), k.view(1, 1, 7, 1).expand(3, 1, 7, 1), groups=3)
    if kind == 2:
        s = 0.5 + 0.4 * float(torch.rand(1, generator=g))
        small = F.interpolate(x, scale_factor=s, mode="bilinear", antialias=True)
        return F.interpolate(small, size=x.shape[-2:], mode="bilinear")
    return x


def refine(
    cover: torch.Tensor,
    deid: torch.Tensor,
    feat_embed: torch.Tensor,
    en,
    steps: int = 20,
    lr: float = 2e-3,
    eps: float = 8 / 255,
    max_delta: float = 0.12,
    lam_near: float = 1.0,
    lam_far: float = 1.0,
    lam_rec: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """Return D' (same shape as ``cover``), refined by ``steps`` signed-gradient (Adam) steps."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        f_c = en(cover)
    x = deid.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        f_d = en(random_smoothing(x, g))
        loss = lam_near * L.near_loss(feat_embed, f_d) + lam_far * L.far_loss(f_c, f_d) + lam_rec * L.rec_loss(cover, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.copy_(torch.minimum(torch.maximum(x, deid - eps), deid + eps))
            x.copy_(torch.minimum(torch.maximum(x, cover - max_delta), cover + max_delta).clamp_(0, 1))
    return x.detach()
