"""LPIPS / VGG perceptual models: restricted unpickling, architecture, and equivalence with lpips and torchvision (recorded outputs)."""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch

from facecloak.models.lpips import LPIPS, load_lpips, load_vgg_features, unit_normalize
from facecloak.zoo.lpips_nets import CONV_INDICES, NumpyOnlyUnpickler
from reference import reference
from reference.record import face_pairs


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickler_allows_arrays_only():
    payload = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    got = NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(payload))).load()
    np.testing.assert_array_equal(got["a"]["kernel"], payload["a"]["kernel"])
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|nt.system"):
        NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(_Evil()))).load()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_architecture_random_weights_forward_backward(net):
    torch.manual_seed(0)
    model = LPIPS(net)
    convs = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    assert tuple(convs) == CONV_INDICES[net]  # torchvision ``features`` indices
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    for p in model.parameters():
        p.data.abs_()  # LPIPS heads are non-negative: distances are then >= 0
    d = model(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-7)
    d.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_unit_normalize():
    x = torch.randn(2, 5, 3, 3)
    n = unit_normalize(x).pow(2).sum(1)
    assert torch.allclose(n, torch.ones_like(n), atol=1e-5)


def _face_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """The astronaut's face against its blurred, JPEG-10, shifted and identical versions ([-1, 1]),
    stored with the reference distances and paired as when they were recorded."""
    return face_pairs(reference("lpips")["images"])


def lpips_v01_head(net: str, i: int) -> torch.Tensor:
    """The lpips package's own v0.1 head file, read without importing the package (its import
    needs torchvision)."""
    import importlib.util

    (pkg,) = importlib.util.find_spec("lpips").submodule_search_locations
    state = torch.load(os.path.join(pkg, "weights", "v0.1", f"{net}.pth"), map_location="cpu", weights_only=True)
    return state[f"lin{i}.model.1.weight"]


@pytest.mark.slow
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_reference_package(net):
    """Our LPIPS against the lpips package's (its trunk given our weights), as recorded by
    tests/reference/record.py; the heads against the package's own files, bit for bit."""
    ours = load_lpips(net)
    for i, lin in enumerate(ours.lins):
        assert torch.equal(lin.weight, lpips_v01_head(net, i))

    x, y = _face_pairs()
    d_ref = torch.from_numpy(reference("lpips")[f"{net}_distance"])
    with torch.no_grad():
        d_ours = ours(x, y)
        d01 = ours.from01((x + 1) / 2, (y + 1) / 2)
    assert torch.allclose(d_ours, d_ref, atol=1e-5, rtol=0), (d_ours, d_ref)
    assert torch.allclose(d01, d_ref, atol=1e-5, rtol=0)
    assert d_ours[3].abs() < 1e-6  # identical images
    assert (d_ours[:3] > 0.01).all()  # real distortions are seen

    # Gradients reach the input, never the frozen weights.
    xg = x[:1].clone().requires_grad_(True)
    ours(xg, y[:1]).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in ours.parameters())


@pytest.mark.slow
def test_vgg_features_are_torchvision_vgg16_relu5_3():
    """Against torchvision's ``vgg16().features[:30]`` with our weights, as recorded."""
    feats = load_vgg_features()
    _, y = _face_pairs()
    x01 = (y[:2] + 1) / 2
    with torch.no_grad():
        out = feats(x01)
    assert out.shape == (2, 512, 12, 12)
    assert torch.allclose(out, torch.from_numpy(reference("vgg16")["relu5_3"]), atol=1e-5)
    assert all(not p.requires_grad for p in feats.parameters())
    # LPIPS-vgg's last tap is the same relu5_3 map (the trainer's perceptual feature).
    lp = load_lpips("vgg")
    x, y = _face_pairs()
    with torch.no_grad():
        _, fx, _ = lp.forward_with_features(x[:1], y[:1])
    assert fx[-1].shape == (1, 512, 12, 12)
