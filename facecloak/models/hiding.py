"""The hiding network (HN) of Hanawa et al. 2024, section 3.1.

HN takes a cover face C (canonical 256x256) and the 512-d recognition feature of an
embedded face E, tiled into a 3x256x256 block, and outputs the de-identified face D.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .warp import smooth_flow, warp


def tile_feature(f: torch.Tensor, size: int = 256, channels: int = 3) -> torch.Tensor:
    """Tile feature vectors ``f`` (B, d) into (B, channels, size, size) blocks (section 3.1).

    The paper reshapes the 1x512 feature into a 2x256 matrix, stacks 128 copies of it in
    the height direction to get 256x256, and repeats that 3 times along channels. That is
    the row-major cyclic fill

        T[c, i, j] = f[(i * size + j) mod d]

    which, for d = 512 and size = 256, gives rows 2k = f[0:256] and rows 2k+1 = f[256:512]:
    exactly the paper's layout. The same formula is the generalisation to any d (128-d
    recognizers, other sizes): the vector is written row by row and repeated until the
    plane is full.
    """
    b, d = f.shape
    n = size * size
    reps = -(-n // d)  # ceil(n / d)
    plane = f.repeat(1, reps)[:, :n].reshape(b, 1, size, size)
    return plane.expand(b, channels, size, size)


class ResBlock(nn.Module):
    """Pre-activation-free ResNet basic block: ``y = relu(conv(relu(conv(x))) + skip(x))``."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(_groups(cout), cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.skip(x))


class UpBlock(nn.Module):
    """Decoder stage: bilinear x2 upsample, concatenate the encoder skip, two 3x3 convs."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin + cskip, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = F.leaky_relu(self.conv1(torch.cat([x, skip], 1)), 0.2)
        return F.leaky_relu(self.conv2(x), 0.2)


def _groups(c: int) -> int:
    return math.gcd(c, 8)


@dataclass(frozen=True)
class HidingNetConfig:
    """Architecture hyper-parameters; saved next to every checkpoint.

    width: channels of the first stage; stages use width x (1, 2, 4, 8, 8).
    feature_dim: size of the embedded recognition feature (512 for ArcFace).
    size: face size (the canonical template is 256).
    max_delta: bound on |D - C| per pixel in [0, 1] units (see ``HidingNet``).
    head_init_std: std of the output conv's initial weights; 0 starts exactly at D = C.
    smooth_sigma: std (pixels, at ``work_size``) of the fixed Gaussian low-pass applied to the
        residual; 0 = none.
    work_size: resolution the network runs at; None = ``size`` (v0.1). With 128 the cover is
        downsampled, the residual is computed at 128 and upsampled bilinearly to the cover's
        size: 4x cheaper to train and run, and the change is low-frequency by construction,
        while every fine detail of C (skin texture, eyelashes) is kept exactly.
    """

    width: int = 16
    feature_dim: int = 512
    size: int = 256
    max_delta: float = 0.12
    head_init_std: float = 0.0
    smooth_sigma: float = 1.0
    work_size: int | None = None
    warp_px: float = 0.0
    warp_grid: int = 32


class HidingNet(nn.Module):
    """U-Net with residual-block encoder: (C, f_en(E)) -> D.

    Input C is RGB in [0, 1], shape (B, 3, S, S); ``feature`` is (B, feature_dim), the
    L2-normalised EN feature of E. The network sees ``cat(2C - 1, tile(sqrt(d) f))``, 6
    channels (the sqrt(d) rescale gives the unit-norm feature unit variance per entry;
    the tiling itself is the paper's, see ``tile_feature``).

    Output: ``D = clamp(C + G_σ * (max_delta * tanh(R)), 0, 1)``, a *bounded, smooth residual*
    on the cover (G_σ a fixed Gaussian low-pass, ``smooth_sigma``). With a warp head
    (``warp_px`` > 0, v0.4) C is first resampled along a bounded smooth displacement field:
    ``D = clamp(warp(C, flow) + G_σ * (max_delta * tanh(R)), 0, 1)``.
    Why residual: the target is "C with small identity-bearing changes"; predicting the
    change starts training at the identity map (the last conv is zero-initialised, so
    D = C at step 0) and keeps image quality high from the first step, which matters when
    training compute is small. Why bounded: ``max_delta`` caps the per-pixel change, so the
    worst-case PSNR is 20 log10(1 / max_delta) dB whatever the input, and a badly
    generalising model can never paint a different face (G_σ is an average, so it keeps
    the bound). Why smooth: the tiled feature reaches the output through the full-resolution
    skip, and a briefly trained network copies its 1-pixel column pattern into D as stripes
    that fool EN but are ugly and are erased by any blur or JPEG; the low-pass makes such
    pixel-level noise impossible and leaves the low-frequency, facial-part changes the
    paper describes (section 4.8), which is also what survives the section 4.9 attacks.
    """

    #: The weights' own calibration of fast mode's strength: `medium` is D = C + fast_scale (D − C)
    #: (``facecloak.cloak.scale_residual``), `low` / `high` scale it by 0.75 / 1.25 as before. Read
    #: from the file's ``fast_scale`` metadata (absent: 1, every network up to v0.7), chosen where
    #: the network meets its quality and protection figures together (model card).
    fast_scale: float = 1.0

    def __init__(self, config: HidingNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or HidingNetConfig()
        w = cfg.width
        ch = [w, 2 * w, 4 * w, 8 * w, 8 * w]
        self.stem = nn.Sequential(nn.Conv2d(6, ch[0], 3, 1, 1), nn.LeakyReLU(0.2))
        self.enc = nn.ModuleList(
            [ResBlock(ch[0], ch[1], 2), ResBlock(ch[1], ch[2], 2), ResBlock(ch[2], ch[3], 2), ResBlock(ch[3], ch[4], 2)]
        )
        self.bottleneck = ResBlock(ch[4], ch[4], 1)
        self.dec = nn.ModuleList(
            [UpBlock(ch[4], ch[3], ch[3]), UpBlock(ch[3], ch[2], ch[2]), UpBlock(ch[2], ch[1], ch[1]), UpBlock(ch[1], ch[0], ch[0])]
        )
        self.head = nn.Conv2d(ch[0], 3, 3, 1, 1)
        nn.init.normal_(self.head.weight, std=cfg.head_init_std) if cfg.head_init_std else nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if cfg.warp_px > 0:  # zero-initialised too: a warp head added to trained weights starts at their output
            self.flow_head = nn.Conv2d(ch[0], 2, 3, 1, 1)
            nn.init.zeros_(self.flow_head.weight)
            nn.init.zeros_(self.flow_head.bias)

    def forward(self, cover: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """D = clamp(warp(C, flow) + residual, 0, 1), from :meth:`components`."""
        residual, flow = self.components(cover, feature)
        if flow is not None:
            cover = warp(cover, flow)
        return (cover + residual).clamp(0, 1)

    def components(self, cover: torch.Tensor, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's two outputs at the cover's size: the bounded, low-passed residual, and the
        warp's flow field (None without a warp head)."""
        d = feature.shape[1]
        if d != self.config.feature_dim:
            raise ValueError(f"feature has {d} dims, the network was built for {self.config.feature_dim}")
        size = cover.shape[-1]
        work = self.config.work_size or size
        small = cover if work == size else F.interpolate(cover, size=(work, work), mode="bilinear", antialias=True, align_corners=False)
        tiled = tile_feature(feature.to(cover.dtype) * math.sqrt(d), work)
        x = self.stem(torch.cat([small * 2 - 1, tiled], 1))
        skips = [x]
        for block in self.enc:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(skips.pop())
        for block in self.dec:
            x = block(x, skips.pop())
        residual = torch.tanh(self.head(x)) * self.config.max_delta
        if self.config.smooth_sigma > 0:
            residual = gaussian_lowpass(residual, self.config.smooth_sigma)
        if work != size:
            residual = F.interpolate(residual, size=cover.shape[-2:], mode="bilinear", align_corners=False)
        flow = smooth_flow(self.flow_head(x), self.config.warp_px, self.config.warp_grid, size) if self.config.warp_px > 0 else None
        return residual, flow


def gaussian_lowpass(x: torch.Tensor, sigma: float, radius_sigmas: float = 2.0) -> torch.Tensor:
    """Separable Gaussian blur, kernel radius ceil(radius_sigmas σ), reflect padding, per channel:
    k(t) = exp(-t² / 2σ²) / Σ exp(-t² / 2σ²)."""
    r = max(1, math.ceil(radius_sigmas * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def config_dict(cfg: HidingNetConfig) -> dict:
    return asdict(cfg)


def save_hiding_net(model: HidingNet, path, half: bool = False, extra: dict | None = None) -> None:
    """Write weights as safetensors, with the architecture config in the header metadata."""
    import json

    from safetensors.torch import save_file

    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(config_dict(model.config))}
    if extra:
        meta.update({k: json.dumps(v) for k, v in extra.items()})
    save_file(sd, str(path), metadata=meta)


def load_hiding_net(path, device: str | torch.device = "cpu") -> HidingNet:
    """Build the network from the file's config metadata and load its weights strictly (and its
    calibrated ``fast_scale``, when the file has one)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path} has no facecloak hiding-network config in its metadata")
    cfg = HidingNetConfig(**json.loads(meta["config"]))
    model = HidingNet(cfg)
    sd = {k: v.float() for k, v in load_file(str(path)).items()}
    _check_fit(path, *model.load_state_dict(sd, strict=False))
    model.fast_scale = float(json.loads(meta.get("fast_scale", "1.0")))
    if not 0 < model.fast_scale <= 2:
        raise ValueError(f"{path}: fast_scale {model.fast_scale} is outside (0, 2]")
    return model.to(device).eval()


def _check_fit(path, missing: list[str], unexpected: list[str], may_lack: str | None = None) -> None:
    """Refuse weights that do not fit the network: any unexpected tensor, or any missing one other
    than those under the prefix ``may_lack`` (a part the saved network did not have)."""
    if unexpected or any(not (may_lack and k.startswith(may_lack)) for k in missing):
        raise ValueError(f"{path}: weights do not fit the network; missing {missing}, unexpected {unexpected}")


def init_from(model: HidingNet, path, device: str | torch.device = "cpu") -> HidingNet:
    """Load a saved network's weights into ``model`` (whose config may differ, e.g. a new
    work_size). The one mismatch allowed is a warp head that the saved network lacks: it keeps
    its zero initialisation, so the new model starts exactly at the saved one's output."""
    saved = load_hiding_net(path, device).state_dict()
    try:
        missing, unexpected = model.load_state_dict(saved, strict=False)
    except RuntimeError as e:  # a tensor of another shape (e.g. another width)
        raise ValueError(f"{path}: weights do not fit the network: {e}") from None
    _check_fit(path, missing, unexpected, may_lack="flow_head.")
    return model
