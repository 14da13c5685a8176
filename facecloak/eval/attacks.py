"""Image-processing attacks against de-identified images (paper section 4.9).

Each attack takes an HxWx3 uint8 RGB image and returns a new one of the same shape and dtype.
Parameters are fixed to the paper's: median blur k=5, Gaussian blur k=5 sigma=2,
JPEG quality 10, bit depth 3. ``ATTACKS`` maps report names to these callables.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np


def _check(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


def median_blur(img: np.ndarray, ksize: int = 5) -> np.ndarray:
    """Median of each ``ksize x ksize`` neighbourhood, per channel (borders replicate-padded)."""
    return cv2.medianBlur(_check(img), ksize)


def gaussian_blur(img: np.ndarray, ksize: int = 5, sigma: float = 2.0) -> np.ndarray:
    """Convolution with a ``ksize x ksize`` Gaussian ``exp(-(x^2 + y^2) / (2 sigma^2))``, normalised."""
    return cv2.GaussianBlur(_check(img), (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def jpeg(img: np.ndarray, quality: int = 10) -> np.ndarray:
    """Encode as baseline JPEG at ``quality`` and decode again, in memory."""
    # OpenCV's codec expects BGR: colour conversion and chroma subsampling depend on the order.
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(_check(img), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def bit_depth(img: np.ndarray, bits: int = 3) -> np.ndarray:
    """Bit-depth reduction (Xu et al. 2018, feature squeezing) to ``2^bits`` levels per channel.

    With x = img / 255 and L = 2^bits - 1: ``x' = round(x L) / L``, returned as ``round(255 x')``.
    For 3 bits the levels are 0, 36, 73, 109, 146, 182, 219, 255.
    """
    levels = 2**bits - 1
    x = _check(img).astype(np.float64) / 255.0
    return np.round(np.round(x * levels) / levels * 255.0).astype(np.uint8)


#: Report name -> attack with the paper's parameters.
ATTACKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median_blur": lambda img: median_blur(img, ksize=5),
    "gaussian_blur": lambda img: gaussian_blur(img, ksize=5, sigma=2.0),
    "jpeg": lambda img: jpeg(img, quality=10),
    "bit_depth": lambda img: bit_depth(img, bits=3),
}
