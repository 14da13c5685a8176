"""Tiny stand-ins for the real models, so pipeline logic is tested in milliseconds."""
from __future__ import annotations

import numpy as np
import torch

from facecloak.cloak import CloakConfig, Cloaker
from facecloak.detect import Face
from facecloak.models.hiding import HidingNet, HidingNetConfig
from facecloak.models.recognizer import Recognizer


class FakeRecognizer(Recognizer):
    """Random conv + pooling: differentiable, deterministic, L2-normalised output."""

    name = "fake"
    dim = 512

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 512, 8, 8)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.05)
            self.conv.bias.zero_()
        self.freeze()

    def embed(self, x):
        return self.conv(x * 2 - 1).mean(dim=(2, 3))


class FixedDetector:
    """Returns the given faces for every image (landmarks in image pixels)."""

    def __init__(self, faces_per_image: dict[int, list[np.ndarray]] | None = None, default: list[np.ndarray] | None = None):
        self.by_width = faces_per_image or {}
        self.default = default or []

    def detect(self, rgb):
        lms = self.by_width.get(rgb.shape[1], self.default)
        out = []
        for lm in lms:
            lm = np.asarray(lm, float)
            x0, y0 = lm.min(0) - 30
            x1, y1 = lm.max(0) + 30
            out.append(Face(box=np.array([x0, y0, x1, y1]), score=0.99, landmarks=lm))
        return out


def landmarks_at(cx: float, cy: float, eye: float = 60.0) -> np.ndarray:
    """Plausible 5 landmarks of a face centred at (cx, cy) with the given eye distance."""
    return np.array([[-0.5, -0.35], [0.5, -0.35], [0, 0.1], [-0.4, 0.6], [0.4, 0.6]]) * eye + [cx, cy]


def tiny_cloaker(detector=None, seed: int = 0, **cfg) -> Cloaker:
    torch.manual_seed(seed)
    hn = HidingNet(HidingNetConfig(width=4, max_delta=0.1))
    torch.nn.init.normal_(hn.head.weight, std=0.5)  # make the untrained network change pixels
    bank = torch.nn.functional.normalize(torch.randn(64, 512, generator=torch.Generator().manual_seed(1)), dim=1)
    return Cloaker(hn, FakeRecognizer(), bank, detector or FixedDetector(), CloakConfig(**cfg))


class _Built(Exception):
    """Stops run_eval once the cloaker is built: what follows is the benchmark itself."""


def cloaker_args_of_run_eval(tmp_path, monkeypatch, **cfg) -> dict:
    """The keyword arguments ``run_eval`` gives ``build_cloaker`` for ``EvalConfig(**cfg)`` (crops
    only, CPU), on a one-crop benchmark with identity recognizers; nothing past that point runs."""
    from PIL import Image

    import facecloak.eval.runner as runner
    import facecloak.pretrained as pretrained
    from facecloak.eval.benchmark import Benchmark

    crop = tmp_path / "a.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(crop)
    bench = Benchmark("tiny", {"p/a": crop}, {"p/a": "p"}, [("p/a", "p/a", True)], [["p/a"]])
    given = {}

    def build_cloaker(**kwargs):
        given.update(kwargs)
        raise _Built

    monkeypatch.setattr(pretrained, "load_recognizer", lambda name, device="cpu": torch.nn.Identity())
    monkeypatch.setattr(pretrained, "build_cloaker", build_cloaker)
    try:
        runner.run_eval(bench, runner.EvalConfig(out=str(tmp_path / "e"), device="cpu", e2e=False, **cfg))
    except _Built:
        return given
    raise AssertionError("run_eval finished without building a cloaker")
