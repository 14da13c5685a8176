"""LPIPS (Zhang et al. 2018, v0.1) and the frozen VGG-16 features of the perceptual loss.

Our own implementation of the published metric; weights come from the ``lpips_alex`` /
``lpips_vgg`` records (``facecloak.zoo.lpips_nets``). Both modules are frozen (eval mode, no
parameter gradients) but differentiable with respect to their inputs.
"""
from __future__ import annotations

import torch
from torch import nn

# Trunk layouts as torchvision ``features``: ints are 3x3 convs (out channels) unless given as
# (out, kernel, stride, padding); "M" is max-pooling. ``taps`` are the ReLU outputs LPIPS uses.
_ALEX = [(64, 11, 4, 2), "M3", (192, 5, 1, 2), "M3", 384, 256, 256]
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}

#: LPIPS v0.1 scaling layer: inputs in [-1, 1] are mapped to ``(x - shift) / scale``
#: (ImageNet mean/std re-expressed for the [-1, 1] range).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def make_features(cfg: list) -> nn.Sequential:
    """A torchvision-style ``features`` Sequential (same indices, so weights load by name)."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif v == "M3":
            layers.append(nn.MaxPool2d(3, 2))
        else:
            out, k, s, p = v if isinstance(v, tuple) else (v, 3, 1, 1)
            layers += [nn.Conv2d(c_in, out, k, s, p), nn.ReLU(inplace=False)]
            c_in = out
    return nn.Sequential(*layers)


def unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Channel-unit normalisation ``x / (||x||_2 over channels + eps)`` (as in lpips)."""
    return x / (torch.sqrt((x**2).sum(dim=1, keepdim=True)) + eps)


def _freeze(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, v0.1.

    Args:
        net: ``"alex"`` (default, the usual metric) or ``"vgg"`` (the usual loss).

    Input: two image batches (B, 3, H, W), RGB, in **[-1, 1]** (as in the lpips package); use
    :meth:`from01` or :func:`lpips01` for [0, 1] images. Output: (B,) distances.

    With trunk activations ``f^l`` at the five taps, ``\\hat f^l`` their channel-unit
    normalisation and ``w_l`` the 1x1 linear heads::

        d(x, y) = sum_l  mean_{h,w}  sum_c  w_{l,c} (\\hat f^l_{chw}(x) - \\hat f^l_{chw}(y))^2

    after the scaling layer ``x -> (x - shift) / scale``. Weights are loaded by
    :func:`load_lpips`; the module is frozen.
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in _TAPS:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        self.features = make_features(_ALEX if net == "alex" else _VGG16)
        self.taps = _TAPS[net]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at the five taps, for [-1, 1] input."""
        h = (x - self.shift) / self.scale
        outs = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                outs.append(h)
        return outs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x, y)[0]

    def forward_with_features(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Distances (B,) plus the raw tap activations of ``x`` and ``y`` (five each).

        For ``net="vgg"`` the last activation is ``relu5_3``, the offline perceptual-loss
        feature, so one trunk pass serves both LPIPS and the perceptual loss.
        """
        feats_x, feats_y = self.trunk(x), self.trunk(y)
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins, feats_x, feats_y):
            diff = (unit_normalize(fx) - unit_normalize(fy)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total, feats_x, feats_y

    def from01(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS for images in [0, 1]: ``forward(2x - 1, 2y - 1)``."""
        return self(2 * x - 1, 2 * y - 1)


def lpips01(model: LPIPS, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Functional form of :meth:`LPIPS.from01`."""
    return model.from01(x, y)


class VGGFeatures(nn.Module):
    """Frozen ImageNet VGG-16 conv features for the perceptual loss.

    The paper's perceptual loss uses the last VGG-19 layer; VGG-19 weights are not available
    offline, so the output of VGG-16's last conv block (``relu5_3``, torchvision
    ``features[:30]``) is used instead.

    Input: (B, 3, H, W) RGB in **[0, 1]**; ImageNet normalisation
    ``(x - mean) / std`` is applied inside. Output: (B, 512, H/16, W/16).
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self):
        super().__init__()
        self.features = make_features(_VGG16)  # ends with relu5_3 (index 29): no final pool
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def _state(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from ..zoo.registry import resolve

    return load_file(str(resolve(name)))


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:  # strict, but with an error that names the keys
        raise RuntimeError(f"{type(module).__name__}: missing keys {missing}, unexpected keys {unexpected}")


def load_lpips(net: str = "alex", device: str | torch.device = "cpu") -> LPIPS:
    """Frozen :class:`LPIPS` with the ``lpips_<net>`` weights (fetched/converted if needed)."""
    model = LPIPS(net)
    _load_strict(model, _state(f"lpips_{net}"))
    return _freeze(model.to(device))


def load_vgg_features(device: str | torch.device = "cpu") -> VGGFeatures:
    """Frozen :class:`VGGFeatures` with the VGG-16 trunk of the ``lpips_vgg`` record."""
    model = VGGFeatures()
    state = {k: v for k, v in _state("lpips_vgg").items() if k.startswith("features.")}
    _load_strict(model, state)
    return _freeze(model.to(device))
