"""MobileFaceNet as shipped in InsightFace's ``buffalo_s`` pack (``w600k_mbf.onnx``), in plain torch.

The exported graph has batch-norm folded into every convolution, so each conv here carries
a bias and there is no BatchNorm2d. Layout (input 112x112, width 128, "scale 2" variant):

    stem      3x3 conv s2 (3->128) + PReLU, 3x3 grouped conv (groups=64) + PReLU    -> 56x56
    stage 1   bottleneck s2 128->128 (expand 128), then 4 residual bottlenecks      -> 28x28
    stage 2   bottleneck s2 128->256 (expand 256), then 6 residual bottlenecks      -> 14x14
    stage 3   bottleneck s2 256->256 (expand 512), then 2 residual bottlenecks      ->  7x7
    head      1x1 conv 256->512 + PReLU, 1x1 conv 512->64 + PReLU, flatten (3136),
              linear 3136->512, BatchNorm1d (the embedding, before L2 normalisation)

A bottleneck is 1x1 expand + PReLU, 3x3 depthwise + PReLU, 1x1 linear projection; the
residual ones add their input. Parameter order follows the graph's node order, which is
what ``onnx_to_state_dict`` relies on.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn


class ConvAct(nn.Module):
    """Conv2d with bias (batch-norm folded in), optionally followed by a per-channel PReLU."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=True)
        self.act = nn.PReLU(cout) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection; ``x + f(x)`` when ``residual``."""

    def __init__(self, cin: int, cexp: int, cout: int, stride: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.expand = ConvAct(cin, cexp, 1)
        self.dw = ConvAct(cexp, cexp, 3, stride, groups=cexp)
        self.project = ConvAct(cexp, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


#: (in, expand, out, number of residual blocks) per stage; each stage starts with a stride-2 block.
STAGES: tuple[tuple[int, int, int, int], ...] = ((128, 128, 128, 4), (128, 256, 256, 6), (256, 512, 256, 2))


class MobileFaceNet(nn.Module):
    """InsightFace buffalo_s recognizer trunk. Input (B,3,112,112) in [-1,1]; output (B,512), not normalised."""

    def __init__(self, embedding_dim: int = 512):
        super().__init__()
        self.stem = nn.Sequential(ConvAct(3, 128, 3, 2), ConvAct(128, 128, 3, 1, groups=64))
        blocks: list[nn.Module] = []
        for cin, cexp, cout, n_res in STAGES:
            blocks.append(Bottleneck(cin, cexp, cout, 2, residual=False))
            blocks += [Bottleneck(cout, cout, cout, 1, residual=True) for _ in range(n_res)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(ConvAct(256, 512, 1), ConvAct(512, 64, 1))
        self.fc = nn.Linear(64 * 7 * 7, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tap(x)[0]

    def forward_tap(self, x: torch.Tensor, tap: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(embedding, the feature map after block ``tap`` of ``blocks``; None when ``tap`` is None).
        Block 11 ends stage 2 (256 channels, 14x14), block 4 ends stage 1 (128, 28x28)."""
        x = self.stem(x)
        mid = None
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == tap:
                mid = x
        x = self.head(x)
        return self.features(self.fc(x.flatten(1))), mid


def onnx_to_state_dict(onnx_path: str) -> "OrderedDict[str, torch.Tensor]":
    """Map ``w600k_mbf.onnx`` initializers onto ``MobileFaceNet``'s state_dict, in graph order.

    Conv weights/biases and PReLU slopes are taken node by node (Conv: inputs 1, 2; PRelu:
    input 1, reshaped from (C,1,1) to (C,)), then the Gemm and BatchNormalization tensors.
    Every shape is checked, so a different graph fails loudly instead of loading garbage.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(onnx_path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    ordered: list[np.ndarray] = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm"):
            ordered += [inits[node.input[1]], inits[node.input[2]]]
        elif node.op_type == "PRelu":
            ordered.append(inits[node.input[1]].reshape(-1))
        elif node.op_type == "BatchNormalization":
            ordered += [inits[n] for n in node.input[1:5]]
    target = MobileFaceNet().state_dict()
    keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(keys) != len(ordered):
        raise ValueError(f"{onnx_path}: {len(ordered)} tensors in the graph, MobileFaceNet has {len(keys)}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, arr in zip(keys, ordered):
        if tuple(arr.shape) != tuple(target[k].shape):
            raise ValueError(f"{onnx_path}: {k} expects {tuple(target[k].shape)}, graph gives {arr.shape}")
        out[k] = torch.tensor(np.asarray(arr, dtype=np.float32))
    out["features.num_batches_tracked"] = torch.zeros((), dtype=torch.int64)
    return out
