"""Per-image quality metrics between a cover image and its de-identified version (paper 4.3).

PSNR and SSIM follow the paper's 8-bit definitions; LPIPS lives in
``facecloak.models.lpips`` (``load_lpips("alex")``). Metrics are computed per image and then
summarised, so reports can give both the mean and the median.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

#: SSIM constants from Wang et al. 2004.
K1, K2 = 0.01, 0.03
#: Gaussian window: sigma 1.5, radius 5 (11 taps), i.e. scipy/skimage's truncate=3.5.
SSIM_SIGMA, SSIM_RADIUS = 1.5, 5


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR = 10 log10(MAX^2 / MSE) with MAX = 255 for 8-bit images; ``inf`` when A == B.

    MSE is the mean over all pixels and channels, computed in float64.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> np.ndarray:
    """Normalised 1-D Gaussian ``w_i ∝ exp(-i^2 / (2 sigma^2))``, ``i = -radius..radius``."""
    i = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-(i**2) / (2.0 * sigma**2))
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with the 1-D window ``w`` on both axes."""
    n = w.size
    rows = sum(w[k] * x[k : x.shape[0] - n + 1 + k, :] for k in range(n))
    return sum(w[k] * rows[:, k : rows.shape[1] - n + 1 + k] for k in range(n))


def _ssim_channel(a: np.ndarray, b: np.ndarray, w: np.ndarray, data_range: float) -> np.ndarray:
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a**2
    var_b = _filter_valid(b * b, w) - mu_b**2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """The per-position SSIM of :func:`ssim` (its formula), averaged over the channels: an
    (H − 10) x (W − 10) array ('valid' positions of the 11x11 window) whose mean is ``ssim(a, b)``.
    Shows *where* two images differ in SSIM's sense (``benchmarks/ssim_map.py``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    w = gaussian_window()
    if min(a.shape[:2]) < w.size:
        raise ValueError(f"images must be at least {w.size}x{w.size} for SSIM")
    return np.mean([_ssim_channel(a[..., c], b[..., c], w, data_range) for c in range(a.shape[2])], axis=0)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5).

    Per pixel, with local Gaussian-weighted means mu, variances sigma^2 and covariance sigma_AB
    (population, not sample, statistics)::

        SSIM = (2 mu_A mu_B + C1)(2 sigma_AB + C2) / ((mu_A^2 + mu_B^2 + C1)(sigma_A^2 + sigma_B^2 + C2))

    with ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, K1 = 0.01, K2 = 0.03, L = 255. The map is averaged
    over the positions where the window fits entirely ('valid'), then over the RGB channels.
    This equals skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=-1, data_range=255)``.
    Accepts HxW or HxWxC arrays.
    """
    return float(ssim_map(a, b, data_range).mean())


def ssim_torch(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Differentiable batched SSIM, the same definition as :func:`ssim`: (B,C,H,W) x2 -> (B,).

    Used as the DSSIM budget of the Fawkes-style baseline; ``DSSIM = (1 - SSIM) / 2``.
    """
    c = a.shape[1]
    w = torch.as_tensor(gaussian_window(), dtype=a.dtype, device=a.device)
    # One grouped conv over all five statistics: much faster on CPU than five separable passes.
    stats = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    kernel = torch.outer(w, w).expand(5 * c, 1, w.numel(), w.numel()).contiguous()
    mu_a, mu_b, e_aa, e_bb, e_ab = F.conv2d(stats, kernel, groups=5 * c).split(c, dim=1)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))


def summarise(values: Iterable[float]) -> dict[str, float]:
    """``{"mean": ..., "median": ...}`` of per-image values.

    Plain numpy statistics: an ``inf`` PSNR (identical images) makes the mean ``inf`` and is
    kept on purpose, so identical outputs are never hidden; the median stays informative.
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values to summarise")
    return {"mean": float(np.mean(v)), "median": float(np.median(v))}
