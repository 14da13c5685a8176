"""RetinaFace mobile0.25 in facexlib's layout, without importing facexlib at run time.

facexlib's module imports ``torchvision.models._utils``; that loads all of torchvision, whose
``ops`` import ``torch._dynamo``: 2.3–3.0 s of every ``facecloak protect`` start-up on a 2-core
CPU, for a network of 0.4 M parameters. This module builds the same network (biubug6's
RetinaFace with a MobileNetV1 x0.25 backbone) with the same parameter names, so facexlib's
``detection_mobilenet0.25_Final.pth`` loads into it strictly. facexlib stays the reference: the
tests check that both give the same outputs on real photos with the same weights.

    out   = heads(SSH_k(FPN(stage1(x), stage2(.), stage3(.))_k)),  k = 1..3 (strides 8, 16, 32)
    loc   = cat_k BboxHead_k,  conf = softmax(cat_k ClassHead_k),  landm = cat_k LandmarkHead_k
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IN_CHANNEL, OUT_CHANNEL, ANCHORS = 32, 64, 2  # facexlib's cfg_mnet
LEAKY = 0.1  # every LeakyReLU of the mobile0.25 network (out channels <= 64)


def conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3, relu: bool = True) -> nn.Sequential:
    """conv k x k (no bias) -> BN [-> LeakyReLU(0.1)]; facexlib's conv_bn / conv_bn1X1 / conv_bn_no_relu."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.LeakyReLU(LEAKY, inplace=True)) if relu else nn.Sequential(*layers)


def conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 -> BN -> LeakyReLU -> pointwise 1x1 -> BN -> LeakyReLU (indices 0 and 3 are the convs)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.LeakyReLU(LEAKY, inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(LEAKY, inplace=True),
    )


class SSH(nn.Module):
    """Context module: relu(cat(3x3, 5x5 = two 3x3, 7x7 = three 3x3)) with shared first layers."""

    def __init__(self, c: int = OUT_CHANNEL):
        super().__init__()
        self.conv3X3 = conv_bn(c, c // 2, relu=False)
        self.conv5X5_1 = conv_bn(c, c // 4)
        self.conv5X5_2 = conv_bn(c // 4, c // 4, relu=False)
        self.conv7X7_2 = conv_bn(c // 4, c // 4)
        self.conv7x7_3 = conv_bn(c // 4, c // 4, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv5X5_1(x)
        b = self.conv7X7_2(a)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(a), self.conv7x7_3(b)], 1))


class FPN(nn.Module):
    """Top-down pyramid: o3; o2 = merge2(o2 + up(o3)); o1 = merge1(o1 + up(o2)) (nearest upsampling)."""

    def __init__(self, cins: tuple[int, int, int] = (2 * IN_CHANNEL, 4 * IN_CHANNEL, 8 * IN_CHANNEL), c: int = OUT_CHANNEL):
        super().__init__()
        self.output1, self.output2, self.output3 = (conv_bn(ci, c, k=1) for ci in cins)
        self.merge1, self.merge2 = conv_bn(c, c), conv_bn(c, c)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class _Head(nn.Module):
    """1x1 conv to ``anchors * n`` values per position, as (B, H*W*anchors, n)."""

    def __init__(self, n: int, c: int = OUT_CHANNEL, anchors: int = ANCHORS):
        super().__init__()
        self.n = n
        self.conv1x1 = nn.Conv2d(c, anchors * n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.n)


def mobilenet_stages() -> nn.ModuleDict:
    """MobileNetV1 x0.25 up to its three returned stages (strides 8, 16, 32; 64/128/256 channels)."""
    return nn.ModuleDict({
        "stage1": nn.Sequential(conv_bn(3, 8, 2), conv_dw(8, 16, 1), conv_dw(16, 32, 2), conv_dw(32, 32, 1),
                                conv_dw(32, 64, 2), conv_dw(64, 64, 1)),
        "stage2": nn.Sequential(conv_dw(64, 128, 2), *(conv_dw(128, 128, 1) for _ in range(5))),
        "stage3": nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1)),
    })


class RetinaFaceMobile(nn.Module):
    """RetinaFace mobile0.25, test phase: ``forward(x) -> (loc, softmax(conf), landm)`` for a BGR,
    mean-subtracted (B, 3, H, W) float batch, exactly as facexlib's ``RetinaFace.forward``."""

    def __init__(self):
        super().__init__()
        self.body = mobilenet_stages()
        self.fpn = FPN()
        self.ssh1, self.ssh2, self.ssh3 = SSH(), SSH(), SSH()
        self.ClassHead = nn.ModuleList(_Head(2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        for stage in self.body.values():
            x = stage(x)
            feats.append(x)
        p = self.fpn(feats)
        f = [self.ssh1(p[0]), self.ssh2(p[1]), self.ssh3(p[2])]
        loc = torch.cat([h(v) for h, v in zip(self.BboxHead, f)], 1)
        conf = torch.cat([h(v) for h, v in zip(self.ClassHead, f)], 1)
        landm = torch.cat([h(v) for h, v in zip(self.LandmarkHead, f)], 1)
        return loc, F.softmax(conf, dim=-1), landm
