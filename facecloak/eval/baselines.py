"""Baseline de-identification methods the paper compares against (section 4.8).

All functions take canonical 256x256 faces ``x`` (torch float (B,3,H,W) in [0,1]) and a
surrogate recognizer ``en`` (a :class:`facecloak.models.recognizer.Recognizer`: differentiable,
L2-normalised embeddings), and return ``x_adv`` clamped to [0,1] with the same shape:
``fn(x, en, **params) -> x_adv``. The classic ones ignore ``en``.

The adversarial ones (LGC, TIP-IM, Fawkes) are *our* implementations, written from each
paper's description with the paper-4.8 budgets; they are not the authors' code, and the
simplifications are stated in each docstring. They are deterministic for a given ``seed``,
batched, and their step counts are parameters so tests and CPU evaluation stay cheap.
The recognizer should be in eval mode (no batch-coupled layers), since one backward pass
serves the whole batch.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from facecloak.align import CANONICAL_256
from facecloak.eval.metrics import ssim_torch

Box = tuple[int, int, int, int]

#: Central face region of the canonical 256 template, (x0, y0, x1, y1) in pixels, x1/y1 exclusive.
#: From the template landmarks (eyes at x 96.5/159.5, y 120; mouth corners at y 185.6; eye
#: distance d = 63): about d/2 beyond the outer eyes horizontally, d*0.63 above the eyes
#: (brows, lower forehead) and d*0.6 below the mouth (chin). Covers eyes, nose, mouth, chin.
FACE_BOX: Box = (64, 80, 192, 224)


# ----------------------------------------------------------------------------- classic


def _in_box(x: torch.Tensor, processed: torch.Tensor, box: Box | None) -> torch.Tensor:
    """``processed`` inside ``box`` (whole image when None), ``x`` elsewhere."""
    if box is None:
        return processed.clamp(0, 1)
    x0, y0, x1, y1 = box
    out = x.clone()
    out[..., y0:y1, x0:x1] = processed[..., y0:y1, x0:x1]
    return out.clamp(0, 1)


def _gaussian_kernel1d(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    i = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(i**2) / (2.0 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, en=None, sigma: float = 8.0, box: Box | None = None) -> torch.Tensor:
    """Separable Gaussian blur ``exp(-i^2 / (2 sigma^2))`` with radius ``ceil(3 sigma)``, reflect borders.

    ``box`` limits the blur to a region (default: the whole canonical crop, which is the face).
    """
    c = x.shape[1]
    k = _gaussian_kernel1d(sigma, x.device, x.dtype)
    r = (k.numel() - 1) // 2
    # Reflect padding needs pad < size; fall back to replicate for very strong blurs.
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    y = F.pad(x, (r, r, r, r), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return _in_box(x, y, box)


def pixelate(x: torch.Tensor, en=None, block: int = 16, box: Box | None = None) -> torch.Tensor:
    """Mosaic: average each ``block x block`` cell (area resampling), then repeat it (nearest)."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(math.ceil(h / block), math.ceil(w / block)), mode="area")
    y = F.interpolate(small, size=(h, w), mode="nearest")
    return _in_box(x, y, box)


def black_mask(x: torch.Tensor, en=None, box: Box = FACE_BOX) -> torch.Tensor:
    """Set ``box`` (default :data:`FACE_BOX`, the central face region) to black."""
    return _in_box(x, torch.zeros_like(x), box)


# ----------------------------------------------------------------------------- adversarial helpers


def _embed_targets(targets: torch.Tensor | None, en, dim: int, gen: torch.Generator, device) -> torch.Tensor:
    """Candidate target identities as (K, D) unit embeddings.

    ``targets`` may be embeddings (K, D) or canonical images (K, 3, H, W). Without targets we
    draw 16 seeded random unit vectors: random directions in a 128-512-d embedding space are
    nearly orthogonal to every real face, i.e. stand-ins for unseen identities.
    """
    if targets is None:
        t = torch.randn(16, dim, generator=gen).to(device)
    elif targets.dim() == 4:
        with torch.no_grad():
            t = en(targets.to(device)).float()
    else:
        t = targets.to(device).float()
    return F.normalize(t, dim=1)


def _mi_fgsm(
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    eps: float,
    steps: int,
    alpha: float | None,
    mu: float,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Momentum iterative FGSM (Dong et al. 2018), minimising ``loss_fn`` (per-sample, (B,)).

    ``g_{t+1} = mu g_t + grad / ||grad||_1``; ``x_{t+1} = clip_{x,eps}(x_t - alpha sign(g_{t+1}))``,
    also clipped to [0,1]. ``alpha`` defaults to ``eps / steps``. ``transform`` is applied to the
    input of each gradient computation (e.g. cutout), never to the returned image.
    """
    alpha = eps / steps if alpha is None else alpha
    x = x.detach()
    x_adv = x.clone()
    g = torch.zeros_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            inp = transform(x_adv) if transform is not None else x_adv
            grad, = torch.autograd.grad(loss_fn(inp).sum(), x_adv)
        l1 = grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        g = mu * g + grad / l1
        x_adv = x_adv.detach() - alpha * g.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def landmark_cutout_mask(
    batch: int, size: int, gen: torch.Generator, prob: float = 0.5, side: int = 48, jitter: int = 8
) -> torch.Tensor:
    """(B,1,size,size) mask, 0 inside cutout squares placed around the canonical landmarks.

    Each of the 5 landmarks (scaled from the 256 template to ``size``) is chosen independently
    with probability ``prob``; its square of side ``side`` is centred on the landmark shifted
    by a uniform offset in ``[-jitter, jitter]`` pixels on each axis.
    """
    scale = size / 256.0
    pts = torch.tensor(CANONICAL_256, dtype=torch.float32) * scale
    chosen = torch.rand(batch, 5, generator=gen) < prob
    centres = pts[None] + (torch.rand(batch, 5, 2, generator=gen) * 2 - 1) * jitter * scale
    half = side * scale / 2.0
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    inx = (coords[None, None, :] - centres[..., 0:1]).abs() <= half  # (B,5,W)
    iny = (coords[None, None, :] - centres[..., 1:2]).abs() <= half  # (B,5,H)
    boxes = iny[..., :, None] & inx[..., None, :] & chosen[..., None, None]  # (B,5,H,W)
    return (~boxes.any(dim=1, keepdim=True)).float()


# ----------------------------------------------------------------------------- adversarial


def lgc(
    x: torch.Tensor,
    en,
    eps: float = 4.0 / 255.0,
    steps: int = 20,
    alpha: float | None = None,
    mu: float = 1.0,
    cutout_prob: float = 0.5,
    cutout_side: int = 48,
    cutout_jitter: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    """LGC: MI-FGSM dodging attack with landmark-guided cutout (our implementation).

    Loss minimised: ``cos(en(M_t ⊙ x_adv + (1 - M_t) 0.5), en(x))`` where ``M_t`` is a fresh
    :func:`landmark_cutout_mask` at every iteration. Cutout regions are filled with mid-grey
    (0.5, the zero of the usual (x - 0.5)/0.5 normalisation); this drops the most
    identity-bearing parts at random so the perturbation does not over-fit them, which is what
    makes the attack transfer. Paper 4.8: ``eps = 4/255`` (L_inf). Defaults: 20 steps,
    ``alpha = eps / steps``, ``mu = 1.0``; cutout: each landmark with p = 0.5, 48-px squares
    (about 3/4 of the eye distance), +-8 px jitter.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        e_src = en(x).detach()

    def cutout(inp: torch.Tensor) -> torch.Tensor:
        m = landmark_cutout_mask(inp.shape[0], inp.shape[-1], gen, cutout_prob, cutout_side, cutout_jitter)
        m = m.to(inp.device, inp.dtype)
        return inp * m + 0.5 * (1 - m)

    def loss(inp: torch.Tensor) -> torch.Tensor:
        return (en(inp) * e_src).sum(dim=1)

    return _mi_fgsm(x, loss, eps, steps, alpha, mu, transform=cutout)


def tip_im(
    x: torch.Tensor,
    en,
    eps: float = 12.0 / 255.0,
    steps: int = 50,
    alpha: float | None = None,
    mu: float = 1.0,
    targets: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """TIP-IM: targeted identity-protection iterative method (our implementation).

    Loss minimised (per image, with e = en(x_adv), s = en(x), t its target):
    ``cos(e, s) - cos(e, t)``: pull toward the target identity while pushing away from the
    source (paper 4.8: ``eps = 12/255``, ``gamma = 0`` so there is no MMD naturalness term).
    Optimised with MI-FGSM (default 50 steps, ``alpha = eps / steps``, ``mu = 1``).

    Target selection, simplified: TIP-IM greedily inserts the targets that most improve
    protection. With gamma = 0 we keep a single greedy pick per image: the candidate closest
    to the source in feature space, i.e. the one the attack reaches most easily. Candidates
    are ``targets`` ((K,D) embeddings or (K,3,H,W) faces of *other* identities, e.g. fake
    identities from the face generator) or, when None, seeded random unit directions.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        e_src = en(x).detach()
    cand = _embed_targets(targets, en, e_src.shape[1], gen, x.device)
    e_tgt = cand[(e_src @ cand.T).argmax(dim=1)]

    def loss(inp: torch.Tensor) -> torch.Tensor:
        e = en(inp)
        return (e * e_src).sum(dim=1) - (e * e_tgt).sum(dim=1)

    return _mi_fgsm(x, loss, eps, steps, alpha, mu)


def fawkes_style(
    x: torch.Tensor,
    en,
    budget: float = 0.007,
    steps: int = 100,
    lr: float = 0.02,
    penalty: float = 100.0,
    targets: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Fawkes-style cloak (mode "high": DSSIM budget 0.007), our implementation.

    Optimises ``w`` with x_adv = (tanh(w) + 1) / 2 (box constraint for free, as Fawkes does) by
    Adam (default 100 steps, lr 0.02 in w space) on, per image,

        ``||en(x_adv) - t||^2 + penalty * max(DSSIM(x_adv, x) - budget, 0)``,
        ``DSSIM = (1 - SSIM) / 2``

    with ``t`` the target identity's embedding. Fawkes enforces the budget with such a penalty;
    in addition we return, per image, the iterate with the lowest feature loss among those
    within budget (the input itself and the last iterate scaled back onto the budget by
    bisection count), so ``DSSIM(x_adv, x) <= budget`` always holds.
    Target: among the candidates (``targets`` as in :func:`tip_im`, or seeded random unit
    directions) the one *most dissimilar* to the source, as Fawkes picks the candidate class
    furthest from the user's features.
    """
    gen = torch.Generator().manual_seed(seed)
    x = x.detach()
    with torch.no_grad():
        e_src = en(x).detach()
    cand = _embed_targets(targets, en, e_src.shape[1], gen, x.device)
    e_tgt = cand[(e_src @ cand.T).argmin(dim=1)]

    w = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    best = x.clone()
    best_feat = ((e_src - e_tgt) ** 2).sum(dim=1)
    for _ in range(steps):
        with torch.enable_grad():
            xa = (torch.tanh(w) + 1) / 2
            feat = ((en(xa) - e_tgt) ** 2).sum(dim=1)
            dssim = (1 - ssim_torch(xa, x)) / 2
            loss = feat + penalty * F.relu(dssim - budget)
            w.grad, = torch.autograd.grad(loss.sum(), w)
        # Keep the best within-budget iterate (evaluated before this step is applied).
        ok = (dssim.detach() <= budget) & (feat.detach() < best_feat)
        best[ok] = xa.detach()[ok]
        best_feat = torch.where(ok, feat.detach(), best_feat)
        opt.step()
    with torch.no_grad():
        # The last iterate may sit just over budget: scale its perturbation back onto the budget.
        xa = _shrink_to_budget(x, (torch.tanh(w) + 1) / 2, budget)
        feat = ((en(xa) - e_tgt) ** 2).sum(dim=1)
        ok = feat < best_feat
        best[ok] = xa[ok]
    return best.clamp(0, 1)


def _shrink_to_budget(x: torch.Tensor, xa: torch.Tensor, budget: float, iters: int = 10) -> torch.Tensor:
    """Per image, ``x + s (xa - x)`` with the largest ``s`` in [0, 1] (bisection) whose DSSIM <= budget."""
    delta = xa - x
    dssim = lambda s: (1 - ssim_torch(x + s.view(-1, 1, 1, 1) * delta, x)) / 2  # noqa: E731
    lo = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    hi = torch.ones_like(lo)
    inside = dssim(hi) <= budget
    lo[inside] = 1.0  # already within budget: keep as is
    for _ in range(iters):
        mid = (lo + hi) / 2
        fits = dssim(mid) <= budget
        lo = torch.where(fits & ~inside, mid, lo)
        hi = torch.where(fits | inside, hi, mid)
    return x + lo.view(-1, 1, 1, 1) * delta


#: Name -> baseline, all with the paper's parameters as defaults.
BASELINES: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_blur": gaussian_blur,
    "pixelate": pixelate,
    "black_mask": black_mask,
    "lgc": lgc,
    "tip_im": tip_im,
    "fawkes": fawkes_style,
}
