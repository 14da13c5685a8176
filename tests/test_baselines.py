"""Baseline de-identification methods with a tiny random differentiable recognizer."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facecloak.align import CANONICAL_256
from facecloak.eval import baselines as B
from facecloak.eval.metrics import ssim_torch
from facecloak.models.recognizer import Recognizer


class TinyRecognizer(Recognizer):
    """Random conv net on canonical faces: differentiable, L2-normalised 32-d output."""

    name, dim = "tiny", 32

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.AvgPool2d(4),
            nn.Conv2d(3, 8, 5, stride=2),
            nn.Tanh(),
            nn.Conv2d(8, 16, 5, stride=2),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(256, 32),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) * 2)


@pytest.fixture(scope="module")
def en() -> Recognizer:
    return TinyRecognizer().freeze()


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """Two smooth 'natural-ish' 256x256 images in [0,1]."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g)
    return F.interpolate(x, size=256, mode="bicubic", align_corners=False).clamp(0, 1)


def _cos(en, a, b) -> torch.Tensor:
    with torch.no_grad():
        return (en(a) * en(b)).sum(dim=1)


# ----------------------------------------------------------------------------- classic


def _outside(t: torch.Tensor, box) -> torch.Tensor:
    x0, y0, x1, y1 = box
    m = torch.ones_like(t, dtype=torch.bool)
    m[..., y0:y1, x0:x1] = False
    return t[m]


def test_black_mask_changes_only_the_face_box(faces):
    out = B.black_mask(faces)
    x0, y0, x1, y1 = B.FACE_BOX
    assert torch.all(out[..., y0:y1, x0:x1] == 0)
    assert torch.equal(_outside(out, B.FACE_BOX), _outside(faces, B.FACE_BOX))
    # The box covers every canonical landmark.
    assert all(x0 <= px < x1 and y0 <= py < y1 for px, py in CANONICAL_256)


def test_pixelate_block_means(faces):
    out = B.pixelate(faces, block=16)
    blocks = out.unfold(2, 16, 16).unfold(3, 16, 16)  # (B,3,16,16,16,16)
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))  # constant cells
    ref = F.avg_pool2d(faces, 16)
    assert torch.allclose(blocks[..., 0, 0], ref, atol=1e-6)
    boxed = B.pixelate(faces, box=B.FACE_BOX)
    assert torch.equal(_outside(boxed, B.FACE_BOX), _outside(faces, B.FACE_BOX))
    assert not torch.equal(boxed, faces)


def test_gaussian_blur(faces):
    const = torch.full((1, 3, 64, 64), 0.3)
    assert torch.allclose(B.gaussian_blur(const, sigma=4.0), const, atol=1e-6)
    out = B.gaussian_blur(faces, sigma=8.0)
    tv = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean()  # noqa: E731
    assert tv(out) < 0.5 * tv(faces)
    assert out.mean().item() == pytest.approx(faces.mean().item(), abs=5e-3)
    boxed = B.gaussian_blur(faces, box=B.FACE_BOX)
    assert torch.equal(_outside(boxed, B.FACE_BOX), _outside(faces, B.FACE_BOX))


# ----------------------------------------------------------------------------- adversarial


def test_cutout_mask():
    g = torch.Generator().manual_seed(0)
    assert torch.all(B.landmark_cutout_mask(3, 256, g, prob=0.0) == 1)
    m = B.landmark_cutout_mask(3, 256, g, prob=1.0, side=48, jitter=8)
    for px, py in CANONICAL_256:  # a 48 px square with +-8 px jitter always covers its landmark
        assert torch.all(m[:, 0, int(py), int(px)] == 0)
    assert 0.7 < m.mean().item() < 0.95  # 5 squares of 48 px cover 5-17 % of the image
    m2 = B.landmark_cutout_mask(64, 256, g, prob=0.5)
    frac = (m2[:, 0, int(CANONICAL_256[2, 1]), int(CANONICAL_256[2, 0])] == 0).float().mean().item()
    assert 0.3 < frac < 0.7  # the nose is cut about half the time


def test_lgc_within_eps_and_dodges(en, faces):
    eps = 4 / 255
    out = B.lgc(faces, en, steps=6)
    assert (out - faces).abs().max().item() <= eps + 1e-6
    assert out.min() >= 0 and out.max() <= 1
    cos = _cos(en, out, faces)
    assert torch.all(cos < 0.97), cos
    # Deterministic given a seed; the cutout draws depend on it.
    assert torch.equal(out, B.lgc(faces, en, steps=6))
    assert not torch.equal(out, B.lgc(faces, en, steps=6, seed=1))


def test_tip_im_within_eps_moves_toward_target(en, faces):
    eps = 12 / 255
    g = torch.Generator().manual_seed(5)
    targets = F.interpolate(torch.rand(4, 3, 16, 16, generator=g), size=256, mode="bilinear")
    out = B.tip_im(faces, en, steps=8, targets=targets)
    assert (out - faces).abs().max().item() <= eps + 1e-6
    assert _cos(en, out, faces).max() < 0.8
    # It moved toward the chosen target: the closest candidate to each source.
    with torch.no_grad():
        t = en(targets)
        chosen = t[(en(faces) @ t.T).argmax(1)]
        e_out = en(out)
        to_target = (e_out * chosen).sum(1)
        assert torch.all(to_target > (en(faces) * chosen).sum(1) + 0.05)
        assert torch.all(to_target > (e_out * en(faces)).sum(1))  # now closer to the target than to itself
    # Random-direction fallback when no targets are given.
    out2 = B.tip_im(faces, en, steps=6)
    assert (out2 - faces).abs().max().item() <= eps + 1e-6 and _cos(en, out2, faces).max() < 0.9


def test_fawkes_respects_dssim_budget_and_dodges(en, faces):
    faces = F.avg_pool2d(faces, 2)  # 128 px: the SSIM budget logic is size-free and 4x cheaper on CPU
    out = B.fawkes_style(faces, en, steps=8, lr=0.05)
    dssim = (1 - ssim_torch(out, faces)) / 2
    assert torch.all(dssim <= 0.007 + 1e-6), dssim
    assert dssim.max() > 0.002  # it used a good part of its budget
    assert torch.all(_cos(en, out, faces) < 0.98)
    assert out.min() >= 0 and out.max() <= 1
    # A tiny budget leaves nearly the original image.
    tight = B.fawkes_style(faces, en, steps=3, budget=1e-5)
    assert torch.all((1 - ssim_torch(tight, faces)) / 2 <= 1e-5 + 1e-7)


def test_registry_and_shapes(en, faces):
    assert set(B.BASELINES) == {"gaussian_blur", "pixelate", "black_mask", "lgc", "tip_im", "fawkes"}
    small = {"lgc": {"steps": 1}, "tip_im": {"steps": 1}, "fawkes": {"steps": 1}}
    for name, fn in B.BASELINES.items():
        out = fn(faces[:1], en, **small.get(name, {}))
        assert out.shape == (1, 3, 256, 256) and out.dtype == faces.dtype, name


def test_eval_runs_the_baselines_at_their_own_default_budgets():
    """Issue 13: the adversarial baselines must not run at a fraction of their defaults."""
    import inspect

    from facecloak.eval.runner import EvalConfig

    cfg = EvalConfig()
    for field, fn in (("lgc_steps", B.lgc), ("tip_im_steps", B.tip_im), ("fawkes_steps", B.fawkes_style)):
        assert getattr(cfg, field) == inspect.signature(fn).parameters["steps"].default, field
