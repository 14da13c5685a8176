"""facecloak: protect face photos from face recognition by feature embedding.

The Python API is this module's top level (see README "Python API")::

    import facecloak

    result = facecloak.protect_image("photo.jpg", out="safe/photo.jpg")
    result.rgb      # the protected photo, (H, W, 3) uint8 RGB
    result.faces    # one FaceRecord per face: box, landmarks, status, identity, psnr, verify

    cloaker = facecloak.Cloaker.from_pretrained()   # many photos: load the models once
    results = cloaker.protect_images([rgb1, rgb2])

Names are imported on first use, so ``import facecloak`` (and ``facecloak --help``) stays free of torch.
"""
from __future__ import annotations

from importlib import import_module

__version__ = "0.2.0"

_EXPORTS = {
    "protect_image": "facecloak.api",
    "Cloaker": "facecloak.cloak",
    "CloakConfig": "facecloak.cloak",
    "CloakResult": "facecloak.cloak",
    "FaceRecord": "facecloak.cloak",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'facecloak' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
