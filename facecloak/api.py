"""``protect_image``: protect one photo from Python, the way ``facecloak protect`` does for files.

For many photos, load the models once with ``Cloaker.from_pretrained()`` and call
``Cloaker.protect_images`` on batches of arrays.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from .cloak import CloakConfig, CloakResult, Cloaker

ImageLike = str | os.PathLike | np.ndarray


def protect_image(
    image: ImageLike,
    *,
    mode: str = "fast",
    seed: int = 0,
    device: str = "auto",
    verify: bool = False,
    out: str | os.PathLike | None = None,
    cloaker: Cloaker | None = None,
) -> CloakResult:
    """Protect every face in one photo.

    Args:
        image: an image file (JPEG, PNG, WebP, ...; EXIF orientation is applied) or an
            (H, W, 3) uint8 RGB array.
        mode: "fast" (the hiding network alone, default) or "strong" (+ 20 gradient steps per face).
        seed: fixes the fake identity given to each face, for reproducible output.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        verify: also check each face with the black-box recognizers; see ``FaceRecord.verify``.
        out: also write the protected photo here, atomically; the format follows the extension
            and identifying metadata is stripped, as ``facecloak protect`` does.
        cloaker: a loaded ``Cloaker`` to use instead (then ``mode``, ``seed``, ``device`` and
            ``verify`` are its own). Without it the shipped models are loaded on the first call
            and kept for later calls with the same options.

    Returns:
        ``CloakResult``: ``rgb`` the protected (H, W, 3) uint8 photo, same size, every pixel
        outside the faces unchanged; ``faces`` one ``FaceRecord`` per detected face (``box``,
        ``landmarks``, ``status`` "protected" or "too_small", fake ``identity``, ``psnr`` in dB,
        ``verify``).

    Raises:
        facecloak.imageio.ImageError: the file cannot be read or ``out`` cannot be written.
        ValueError: ``image`` is an array of the wrong shape or type.
        facecloak.zoo.registry.ModelNotAvailable: a model could not be loaded.
    """
    from .imageio import load_image, save_image

    loaded = load_image(image) if isinstance(image, (str, os.PathLike)) else None
    rgb = loaded.rgb if loaded is not None else check_rgb(image)
    if cloaker is None:
        cloaker = _pretrained(mode, seed, device, verify)
    result = cloaker.protect_images([rgb])[0]
    if out is not None:
        save_image(Path(out), dataclasses.replace(loaded, rgb=result.rgb) if loaded is not None else result.rgb)
    return result


def check_rgb(image: np.ndarray) -> np.ndarray:
    """The array itself when it is (H, W, 3) uint8, else a ValueError that says what to pass."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        what = f"{image.shape} {image.dtype} array" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"protect_image needs a file path or an (H, W, 3) uint8 RGB array, not a {what}; "
                         "convert it first, e.g. np.asarray(pil_image.convert('RGB')).")
    return image


@functools.lru_cache(maxsize=2)
def _pretrained(mode: str, seed: int, device: str, verify: bool) -> Cloaker:
    if mode not in ("fast", "strong"):
        raise ValueError(f"mode must be 'fast' or 'strong', not {mode!r}")
    from .pretrained import build_cloaker

    return build_cloaker(device=device, config=CloakConfig(mode=mode, seed=seed), verify=verify)
