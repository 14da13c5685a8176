"""DCGAN generator (Radford et al. 2016) for 64x64 synthetic faces: the fake identities.

Layout of ``gan-face-generate``'s ``netG`` (the PyTorch DCGAN tutorial, nz=100, ngf=64):
four ``ConvTranspose2d(k=4, bias=False) -> BatchNorm2d -> ReLU`` blocks, 1x1 -> 4 -> 8 -> 16
-> 32, then ``ConvTranspose2d(ngf, 3, 4, 2, 1) -> tanh`` to a 64x64 RGB image in [-1, 1].
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class UpBlock(nn.Module):
    """``ReLU(BN(ConvTranspose2d(x)))``; the first block (stride 1, pad 0) maps 1x1 noise to 4x4."""

    def __init__(self, cin: int, cout: int, stride: int, pad: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.deconv(x)))


class DCGANGenerator(nn.Module):
    """Noise (B, nz) or (B, nz, 1, 1) -> RGB images (B, 3, 64, 64) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.nz = nz
        widths = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
        self.blocks = nn.Sequential(
            *[UpBlock(widths[i], widths[i + 1], 1 if i == 0 else 2, 0 if i == 0 else 1) for i in range(4)]
        )
        self.to_rgb = nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_rgb(self.blocks(z.reshape(z.shape[0], self.nz, 1, 1))))


def tutorial_to_state_dict(net_g: dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename the tutorial's ``main.<i>.*`` keys: ConvT at 0,3,6,9, BN at 1,4,7,10, output ConvT at 12."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in net_g.items():
        idx, _, rest = key.removeprefix("main.").partition(".")
        i = int(idx)
        if i == 12:
            name = f"to_rgb.{rest}"
        elif i % 3 in (0, 1) and i < 12:
            name = f"blocks.{i // 3}.{'deconv' if i % 3 == 0 else 'bn'}.{rest}"
        else:
            raise KeyError(f"unexpected generator key {key!r}")
        out[name] = value.detach().clone().contiguous()
    return out
