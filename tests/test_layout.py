"""Strong mode's surrogates run with channels-last (NHWC) weights (``Cloaker._surrogates``): oneDNN's
faster convolutions, for the same embeddings and the same gradients to the face."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "zoo_arcface_sface_dcgan"


def is_nhwc(module: torch.nn.Module) -> bool:
    """Every 4-D weight NHWC-contiguous, and at least one no longer NCHW-contiguous (1x1 and
    single-input-channel kernels are both at once)."""
    convs = [p for p in module.parameters() if p.dim() == 4]
    return all(p.is_contiguous(memory_format=torch.channels_last) for p in convs) and any(not p.is_contiguous() for p in convs)


def embeddings_and_input_gradients(rec, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xg = x.clone().requires_grad_(True)
    e = rec(xg)
    (e * torch.linspace(-1, 1, e.shape[1])).sum().backward()  # a direction that is not just the norm
    return e.detach(), xg.grad


def test_nhwc_weights_give_a_tiny_network_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(  # the layer kinds of the recognizers (batch norm folded)
        torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.PReLU(8), torch.nn.Conv2d(8, 8, 3, 1, 1, groups=8),
        torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 16, 3, 2, 1),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 8),
    ).eval()
    x = torch.rand(2, 3, 64, 64)
    e0, g0 = embeddings_and_input_gradients(net, x)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.to(memory_format=torch.channels_last)
    assert is_nhwc(net)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # same values, same keys
    e1, g1 = embeddings_and_input_gradients(net, x)
    assert (e0 - e1).abs().max() < 1e-5 and (g0 - g1).abs().max() < 1e-5


@pytest.mark.slow
def test_strong_surrogates_are_nhwc_and_match_nchw_on_real_faces():
    from facecloak.cloak import CloakConfig
    from facecloak.pretrained import build_cloaker

    ck = build_cloaker(device="cpu", config=CloakConfig(mode="strong", strength="medium"))
    surrogates = ck._surrogates()
    assert set(surrogates) == {"arcface_mbf", "facenet_casia"}
    faces = np.stack([np.asarray(Image.open(FIXTURES / f"{n}.jpg").convert("RGB")) for n in ("obama", "obama2", "biden")])
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    for name, (rec, _) in surrogates.items():
        assert is_nhwc(rec), name
        e1, g1 = embeddings_and_input_gradients(rec, x)
        rec.to(memory_format=torch.contiguous_format)
        e0, g0 = embeddings_and_input_gradients(rec, x)
        rec.to(memory_format=torch.channels_last)
        assert (e0 - e1).abs().max() < 1e-5, name
        # Compared as wholes: measured 9e-4 (ArcFace) and 4e-7 (FaceNet) of the gradient's norm;
        # a layout slip (a flatten in the wrong order, say) would be of the order of 1.
        assert (g0 - g1).norm() < 5e-3 * g0.norm(), name
