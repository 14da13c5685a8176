"""Inception-ResNet-v1 (Szegedy et al. 2016) as used by FaceNet (davidsandberg/facenet).

Batch norm is folded into the convolutions (every conv has a bias and is followed by ReLU), as
in the frozen graph we convert from, so the module behaves the same in train and eval mode.

Layout for a 160x160 input (channels x size):
stem 3 -> 32 (79) -> 32 (77) -> 64 (77) -> maxpool (38) -> 80 (38) -> 192 (36) -> 256 (17);
5 x Block35 (scale 0.17); Mixed_6a -> 896 (8); 10 x Block17 (scale 0.10); Mixed_7a -> 1792 (3);
5 x Block8 (scale 0.20) and one Block8 without ReLU (scale 1.0); global average pool;
``last_linear`` 1792 -> 512 (the bottleneck, with its batch norm folded in).

Each residual block computes ``y = act(x + scale * up(concat(branches(x))))`` where ``up`` is a
1x1 conv with bias and no activation. Branches are ``nn.Sequential`` of conv+ReLU layers whose
order matches the TF-slim scope names sorted alphabetically (``Conv2d_0a`` < ``0b`` < ``1a``),
which is what the converter in ``facecloak.zoo.facenet`` relies on.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvReLU(nn.Module):
    """``relu(conv(x) + b)``: a TF-slim conv + batch norm + ReLU with the batch norm folded."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, same: bool = False):
        super().__init__()
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        # TF "SAME" with stride 1 and odd kernels is symmetric padding k//2; every stride-2 conv
        # in this network is "VALID", so no asymmetric padding is ever needed.
        pad = (k[0] // 2, k[1] // 2) if same else (0, 0)
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def _seq(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """``act(x + scale * conv2d(concat_k branch_k(x)))``."""

    def __init__(self, branches: list[nn.Sequential], cat_ch: int, out_ch: int, scale: float, relu: bool = True):
        super().__init__()
        for i, b in enumerate(branches):
            self.add_module(f"branch{i}", b)
        self.n_branches = len(branches)
        self.conv2d = nn.Conv2d(cat_ch, out_ch, 1, bias=True)
        self.scale = scale
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], dim=1)
        y = x + self.scale * self.conv2d(cat)
        return torch.relu(y) if self.relu else y


class Concat(nn.Module):
    """Reduction block: concatenation of parallel branches (no residual)."""

    def __init__(self, branches: list[nn.Sequential]):
        super().__init__()
        for i, b in enumerate(branches):
            self.add_module(f"branch{i}", b)
        self.n_branches = len(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], dim=1)


def block35(scale: float = 0.17) -> ResidualBlock:
    return ResidualBlock(
        [
            _seq(ConvReLU(256, 32, 1)),
            _seq(ConvReLU(256, 32, 1), ConvReLU(32, 32, 3, same=True)),
            _seq(ConvReLU(256, 32, 1), ConvReLU(32, 32, 3, same=True), ConvReLU(32, 32, 3, same=True)),
        ],
        96,
        256,
        scale,
    )


def block17(scale: float = 0.10) -> ResidualBlock:
    return ResidualBlock(
        [
            _seq(ConvReLU(896, 128, 1)),
            _seq(ConvReLU(896, 128, 1), ConvReLU(128, 128, (1, 7), same=True), ConvReLU(128, 128, (7, 1), same=True)),
        ],
        256,
        896,
        scale,
    )


def block8(scale: float = 0.20, relu: bool = True) -> ResidualBlock:
    return ResidualBlock(
        [
            _seq(ConvReLU(1792, 192, 1)),
            _seq(ConvReLU(1792, 192, 1), ConvReLU(192, 192, (1, 3), same=True), ConvReLU(192, 192, (3, 1), same=True)),
        ],
        384,
        1792,
        scale,
        relu,
    )


def mixed_6a() -> Concat:
    return Concat(
        [
            _seq(ConvReLU(256, 384, 3, stride=2)),
            _seq(ConvReLU(256, 192, 1), ConvReLU(192, 192, 3, same=True), ConvReLU(192, 256, 3, stride=2)),
            _seq(nn.MaxPool2d(3, stride=2)),
        ]
    )


def mixed_7a() -> Concat:
    return Concat(
        [
            _seq(ConvReLU(896, 256, 1), ConvReLU(256, 384, 3, stride=2)),
            _seq(ConvReLU(896, 256, 1), ConvReLU(256, 256, 3, stride=2)),
            _seq(ConvReLU(896, 256, 1), ConvReLU(256, 256, 3, same=True), ConvReLU(256, 256, 3, stride=2)),
            _seq(nn.MaxPool2d(3, stride=2)),
        ]
    )


class InceptionResnetV1(nn.Module):
    """FaceNet's Inception-ResNet-v1 trunk plus bottleneck.

    Args:
        embedding_dim: bottleneck size (512 for the 2018 FaceNet models).

    Input: (B, 3, 160, 160) RGB, already normalised as ``(x_255 - 127.5) / 128``.
    Output: (B, embedding_dim) *un-normalised* embeddings (L2-normalise them to compare).
    """

    def __init__(self, embedding_dim: int = 512):
        super().__init__()
        self.conv2d_1a = ConvReLU(3, 32, 3, stride=2)
        self.conv2d_2a = ConvReLU(32, 32, 3)
        self.conv2d_2b = ConvReLU(32, 64, 3, same=True)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvReLU(64, 80, 1)
        self.conv2d_4a = ConvReLU(80, 192, 3)
        self.conv2d_4b = ConvReLU(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*[block35() for _ in range(5)])
        self.mixed_6a = mixed_6a()
        self.repeat_2 = nn.Sequential(*[block17() for _ in range(10)])
        self.mixed_7a = mixed_7a()
        self.repeat_3 = nn.Sequential(*[block8() for _ in range(5)])
        self.block8 = block8(scale=1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.last_linear = nn.Linear(1792, embedding_dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.repeat_3(self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(x)))))
        x = self.avgpool_1a(self.block8(x)).flatten(1)
        return self.last_linear(x)
