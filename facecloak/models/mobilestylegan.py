"""MobileStyleGAN (Belousov, arXiv 2104.04767): a StyleGAN2-FFHQ generator distilled into a small net.

Our own implementation of the architecture shipped as OpenVINO IR in ``random-face==2021.7.21.1``
(``facecloak.zoo.stylegan`` maps those weights onto it). Shapes for the released 1024-px model:

* **Mapping** ``z (B,512) -> w (B,512)``: pixel norm ``z / sqrt(mean(z^2) + 1e-8)``, then 8 x
  ``sqrt(2) * leaky_relu(W z + b, 0.2)`` (the equalised-lr gains are already folded into W, b).
* **Synthesis** ``w -> image (B,3,1024,1024)`` in about [-1, 1], the same ``w`` at every layer:

  - a learned constant (512, 4, 4) and one full 3x3 modulated conv;
  - 7 blocks (4 -> 8 -> ... -> 512 px), each: modulate, **inverse Haar wavelet** up-sampling (the
    first C/4 channels are the low band, the rest the three high bands of each channel), then two
    modulated depthwise-separable 3x3 convs;
  - a 1x1 modulated conv to 12 channels: the four Haar sub-bands of RGB at 512 px, whose inverse
    wavelet transform is the 1024-px image.

  A *modulated* conv scales its input channels by ``s = scale * (A w + a)`` with
  ``scale = 1 / sqrt(C_in k^2)``; MobileStyleGAN demodulates with a fixed style statistic, so the
  demodulation is a constant per output channel, already folded into the conv weight. Each styled
  conv then adds a fixed noise map (the exported, frozen noise), a bias and ``leaky_relu(., 0.2)``.

The last 1x1 conv gives the Haar sub-bands at 512 px. The low band ``LL`` satisfies
``LL / 2 = avgpool2(image_1024)``, so 512- and 256-px images come out exactly (as the area
down-sampling of the 1024-px output) without the final inverse transform.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Output channels of the constant input and of each synthesis block, for the released model.
CHANNELS_1024 = (512, 512, 512, 512, 512, 256, 128, 64)


def haar_idwt(x: torch.Tensor) -> torch.Tensor:
    """Inverse one-level Haar (db1) wavelet transform, (B, 4C, H, W) -> (B, C, 2H, 2W).

    Channels ``[0, C)`` are the low bands ``LL_c``; channel ``C + 3c + k`` is high band ``k`` of
    channel ``c``. With ``g0 = (1, 1)/sqrt 2``, ``g1 = (1, -1)/sqrt 2`` and ``a, b`` in {0, 1}:
    ``y[2i+a, 2j+b] = g0[a]g0[b] LL + g1[a]g0[b] H0 + g0[a]g1[b] H1 + g1[a]g1[b] H2``
    (pytorch_wavelets' ``DWTInverse(wave='db1', mode='zero')``: columns first, then rows).
    """
    b, c4, h, w = x.shape
    c = c4 // 4
    bands = torch.cat([x[:, :c].unsqueeze(2), x[:, c:].reshape(b, c, 3, h, w)], dim=2)
    kernel = _haar_synthesis_kernel(x.device, x.dtype)
    y = F.conv_transpose2d(bands.reshape(b * c, 4, h, w), kernel, stride=2)
    return y.reshape(b, c, 2 * h, 2 * w)


def _haar_synthesis_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    g0 = torch.tensor([1.0, 1.0]) / math.sqrt(2.0)
    g1 = torch.tensor([1.0, -1.0]) / math.sqrt(2.0)
    # kernel[band, 0, a, b]: the weight of band k at output offset (a, b) in each 2x2 block.
    k = torch.stack([torch.outer(g0, g0), torch.outer(g1, g0), torch.outer(g0, g1), torch.outer(g1, g1)])
    return k.unsqueeze(1).to(device=device, dtype=dtype)


class MappingNetwork(nn.Module):
    """``z -> w``: pixel norm, then ``n_layers`` of ``sqrt(2) * leaky_relu(W x + b, 0.2)``."""

    def __init__(self, style_dim: int = 512, n_layers: int = 8):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(style_dim, style_dim) for _ in range(n_layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2) * math.sqrt(2.0)
        return x


class StyleModulation(nn.Module):
    """Per-channel scales ``scale * (A w + a)`` as a (B, C, 1, 1) tensor."""

    def __init__(self, style_dim: int, channels: int, scale: float = 1.0):
        super().__init__()
        self.affine = nn.Linear(style_dim, channels)
        self.scale = scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return (self.affine(w) * self.scale)[:, :, None, None]


class StyledConv(nn.Module):
    """``leaky_relu(conv(x * s) + noise + bias, 0.2)``; ``conv`` is a full k x k conv, or a
    depthwise 3x3 followed by a pointwise 1x1 (``depthwise=True``). ``size`` is the output side."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, size: int, depthwise: bool, kernel: int = 3):
        super().__init__()
        self.modulation = StyleModulation(style_dim, c_in, 1.0 / math.sqrt(c_in * kernel * kernel))
        self.depthwise = depthwise
        if depthwise:
            self.weight_dw = nn.Parameter(torch.randn(c_in, 1, kernel, kernel))
            self.weight = nn.Parameter(torch.randn(c_out, c_in, 1, 1))
        else:
            self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.register_buffer("noise", torch.zeros(1, 1, size, size))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.modulation(w)
        if self.depthwise:
            # Scaling the input channels equals scaling each sample's depthwise kernels: one
            # grouped conv over (sample, channel) saves a full-resolution pass (~25% on CPU).
            b, c, h, wd = x.shape
            k = (self.weight_dw.unsqueeze(0) * s.view(b, c, 1, 1, 1)).reshape(b * c, 1, *self.weight_dw.shape[-2:])
            x = F.conv2d(x.reshape(1, b * c, h, wd), k, padding=k.shape[-1] // 2, groups=b * c).reshape(b, c, h, wd)
            x = F.conv2d(x, self.weight, self.bias)
        else:
            x = F.conv2d(x * s, self.weight, self.bias, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu_(x.add_(self.noise), 0.2)  # in place: autograd-safe (positive slope)


class SynthesisBlock(nn.Module):
    """Modulate, inverse-Haar up-sample (C_in -> C_in/4 channels, side x2), two styled DW convs."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, size: int):
        super().__init__()
        self.up_modulation = StyleModulation(style_dim, c_in)
        self.conv1 = StyledConv(c_in // 4, c_out, style_dim, size, depthwise=True)
        self.conv2 = StyledConv(c_out, c_out, style_dim, size, depthwise=True)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = haar_idwt(x * self.up_modulation(w))
        return self.conv2(self.conv1(x, w), w)


class ToWavelets(nn.Module):
    """1x1 modulated conv to the 4 Haar sub-bands of RGB: (B, 12, H, W), low bands first."""

    def __init__(self, c_in: int, style_dim: int):
        super().__init__()
        self.modulation = StyleModulation(style_dim, c_in, 1.0 / math.sqrt(c_in))
        self.weight = nn.Parameter(torch.randn(12, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(12))

    def forward(self, x: torch.Tensor, w: torch.Tensor, low_only: bool = False) -> torch.Tensor:
        """All 12 sub-band channels, or only the 3 low bands (``LL``) when ``low_only``."""
        n = 3 if low_only else 12
        return F.conv2d(x * self.modulation(w), self.weight[:n], self.bias[:n])


class SynthesisNetwork(nn.Module):
    """``w -> image``. ``channels[0]`` is the 4x4 constant's width, ``channels[i]`` block i's output."""

    def __init__(self, style_dim: int = 512, channels: Sequence[int] = CHANNELS_1024):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        self.conv1 = StyledConv(channels[0], channels[0], style_dim, 4, depthwise=False)
        self.blocks = nn.ModuleList(
            SynthesisBlock(c_in, c_out, style_dim, 2 ** (i + 3))
            for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]))
        )
        self.to_wavelets = ToWavelets(channels[-1], style_dim)
        #: side of the full output image
        self.size = 2 ** (len(channels) + 2)

    def wavelets(self, w: torch.Tensor, low_only: bool = False) -> torch.Tensor:
        """The final Haar sub-bands (B, 12, size/2, size/2), or only ``LL`` (B, 3, ...)."""
        x = self.conv1(self.const.expand(w.shape[0], -1, -1, -1), w)
        for block in self.blocks:
            x = block(x, w)
        return self.to_wavelets(x, w, low_only)

    def forward(self, w: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Image (B, 3, size, size) in about [-1, 1]. ``size`` below the full side is the exact
        area down-sampling of the full image: ``LL / 2`` at half size, then average pooling."""
        size = size or self.size
        if size == self.size:
            return haar_idwt(self.wavelets(w))
        half = self.size // 2
        if half % size:
            raise ValueError(f"size must divide {half} or equal {self.size}, got {size}")
        img = self.wavelets(w, low_only=True) * 0.5
        return F.avg_pool2d(img, half // size) if size < half else img


class MobileStyleGAN(nn.Module):
    """Mapping + synthesis, with truncation toward ``w_avg``: ``w = w_avg + psi (w - w_avg)``.

    Args:
        style_dim: width of z and w (512 for the released model).
        channels: synthesis widths, default the released 1024-px model's.
        n_mapping: mapping depth (8).

    ``w_avg`` is not part of the weights: set it with :meth:`set_w_avg` (the released model's
    recipe is the mean w of 4,096 standard-normal z).
    """

    def __init__(self, style_dim: int = 512, channels: Sequence[int] = CHANNELS_1024, n_mapping: int = 8):
        super().__init__()
        self.style_dim = style_dim
        self.mapping = MappingNetwork(style_dim, n_mapping)
        self.synthesis = SynthesisNetwork(style_dim, channels)
        self.register_buffer("w_avg", torch.zeros(1, style_dim), persistent=False)

    @torch.no_grad()
    def set_w_avg(self, n: int = 4096, seed: int = 0, batch: int = 1024) -> None:
        """``w_avg = mean_i mapping(z_i)``, z_i ~ N(0, I) drawn on the CPU from ``seed``."""
        g = torch.Generator().manual_seed(seed)
        dev = self.w_avg.device
        total = torch.zeros(1, self.style_dim, dtype=torch.float64, device=dev)
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), self.style_dim, generator=g).to(dev)
            total += self.mapping(z).double().sum(0, keepdim=True)
        self.w_avg.copy_((total / n).to(self.w_avg.dtype))

    def style(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.mapping(z)
        return w if truncation == 1.0 else self.w_avg + truncation * (w - self.w_avg)

    def forward(self, z: torch.Tensor, truncation: float = 1.0, size: int | None = None) -> torch.Tensor:
        return self.synthesis(self.style(z, truncation), size=size)
