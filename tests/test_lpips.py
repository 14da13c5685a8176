"""LPIPS / VGG perceptual models: restricted unpickling, architecture, and equivalence with lpips."""
from __future__ import annotations

import io
import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from facecloak.models.lpips import LPIPS, VGGFeatures, load_lpips, load_vgg_features, unit_normalize
from facecloak.zoo.lpips_nets import CONV_INDICES, NumpyOnlyUnpickler


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
    """The astronaut's face against its blurred, its JPEG-10 and a shifted version ([-1, 1])."""
    import skimage.data

    face = skimage.data.astronaut()[20:212, 150:342]  # 192x192 around the face
    blur = cv2.GaussianBlur(face, (0, 0), 2.0)
    _, enc = cv2.imencode(".jpg", face[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 10])
    jpeg = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]
    shift = np.roll(face, 3, axis=1)

    def t(imgs):
        return torch.from_numpy(np.stack(imgs).copy()).permute(0, 3, 1, 2).float() / 127.5 - 1

    return t([face, face, face, face]), t([blur, jpeg, shift, face])


@pytest.mark.slow
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_reference_package(net):
    import lpips

    ours = load_lpips(net)
    ref = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    # The reference's trunk slices keep torchvision's ``features`` indices as module names.
    trunk = {k.split(".", 1)[1]: k for k in ref.net.state_dict()}
    ref_state = ref.state_dict()
    for k, v in ours.state_dict().items():
        if k.startswith("features."):
            ref_state[f"net.{trunk[k.split('.', 1)[1]]}"] = v
    ref.load_state_dict(ref_state, strict=True)
    # Heads: the package's own v0.1 files must equal the converted ones bit for bit.
    for i, lin in enumerate(ours.lins):
        assert torch.equal(lin.weight, ref.lins[i].model[1].weight)

    x, y = _face_pairs()
    with torch.no_grad():
        d_ours = ours(x, y)
        d_ref = ref(x, y).flatten()
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
    import torchvision

    feats = load_vgg_features()
    tv = torchvision.models.vgg16(weights=None).features[:30].eval()
    tv.load_state_dict({k.split(".", 1)[1]: v for k, v in feats.state_dict().items()}, strict=True)
    x, y = _face_pairs()
    x01 = (y[:2] + 1) / 2
    norm = (x01 - torch.tensor(VGGFeatures.MEAN).view(1, 3, 1, 1)) / torch.tensor(VGGFeatures.STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = feats(x01)
        assert out.shape == (2, 512, 12, 12)
        assert torch.allclose(out, tv(norm), atol=1e-5)
    assert all(not p.requires_grad for p in feats.parameters())
    # LPIPS-vgg's last tap is the same relu5_3 map (the trainer's perceptual feature).
    lp = load_lpips("vgg")
    with torch.no_grad():
        _, fx, _ = lp.forward_with_features(x[:1], y[:1])
    assert fx[-1].shape == (1, 512, 12, 12)
