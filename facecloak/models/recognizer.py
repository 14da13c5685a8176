"""The one interface every face recognizer shares.

Input: canonical 256x256 aligned RGB faces, float in [0, 1], shape (B, 3, 256, 256).
Output: L2-normalised embeddings, shape (B, dim).

Each recognizer declares its own preprocessing (re-crop to its template, resize,
normalisation) inside ``forward``, so callers never need to know it.
"""
from __future__ import annotations

import torch
from torch import nn


class Recognizer(nn.Module):
    """Base class. Subclasses set ``name``, ``dim``, ``differentiable`` and implement ``embed``."""

    name: str = "recognizer"
    dim: int = 0
    differentiable: bool = True
    #: cosine threshold for "same person"; set by calibration (eval) or the record default.
    threshold: float | None = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x)
        return torch.nn.functional.normalize(e.float(), dim=1)

    def freeze(self) -> "Recognizer":
        """Frozen models are evaluated, never trained: eval mode, no parameter gradients."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
