"""StyleGAN2-FFHQ faces: MobileStyleGAN from ``random-face==2021.7.21.1`` as our own PyTorch module.

The wheel ships the generator as OpenVINO IR (``random_face/data/{Mapping,Synthesis}Network.{xml,bin}``);
its Python code is broken (it imports ``gdown`` and a removed OpenVINO API), so only the data
files are used. The converter reads the IR with ``facecloak.zoo.ovir`` (no OpenVINO needed),
walks the graph in topological order, checks every structural constant it does not keep (Haar
filters, leaky slopes, gains, modulation scales) and writes the weights as safetensors.
"""
from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.mobilestylegan import MobileStyleGAN
from .ovir import IRGraph
from .registry import ModelRecord, PackageSource, register, resolve

STYLE_DIM = 512

#: Mean 5-point landmarks (LE, RE, nose, LM, RM; image left/right) of the generator's faces at
#: 256 px (the 1024-px output area-down-sampled 4x). Measured once: 48 faces (seed 0, truncation
#: 0.7) through facecloak's RetinaFace. FFHQ's own alignment makes them nearly the canonical
#: template (which is the FFHQ/GFPGAN 512 template halved): per-point spread is about 2 px for the
#: eyes and up to 7 px for the nose (head yaw).
FFHQ_LANDMARKS_256 = np.array(
    [[95.29, 120.51], [160.36, 120.97], [125.80, 158.16], [97.71, 185.38], [158.30, 185.86]], dtype=np.float64
)


def _find(src_dir: Path, name: str) -> Path:
    hits = sorted(src_dir.rglob(name))
    if not hits:
        raise FileNotFoundError(f"no {name} inside {src_dir} (expected random_face/data/{name})")
    return hits[0]


def _scalar(g: IRGraph, lid: int) -> float:
    return float(g.const(lid).reshape(-1)[0])


def _const_input(g: IRGraph, lid: int) -> tuple[np.ndarray, int]:
    """(array, port) of the one Const input of layer ``lid``."""
    for port, (src, _) in enumerate(g.layers[lid].inputs):
        if g.layers[src].type == "Const":
            return g.const(src), port
    raise ValueError(f"layer {g.layers[lid].name} has no Const input")


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"unexpected MobileStyleGAN IR: {what}")


def mapping_state_dict(g: IRGraph) -> dict[str, np.ndarray]:
    """``mapping.layers.{i}.{weight,bias}`` from the 8 MatMul + bias-Add pairs of MappingNetwork.xml."""
    out: dict[str, np.ndarray] = {}
    matmuls = g.of_type("MatMul")
    _check(len(matmuls) == 8, f"{len(matmuls)} mapping layers")
    for i, mm in enumerate(matmuls):
        _check(mm.attrs.get("transpose_b") == "true", "mapping MatMul without transpose_b")
        weight, _ = _const_input(g, mm.id)
        add = next(g.layers[c] for c in g.consumers[mm.id] if g.layers[c].type == "Add")
        bias_src = next(g.layers[s] for s, _ in add.inputs if s != mm.id)
        _check(bias_src.type == "Reshape", "mapping bias is not a reshaped constant")
        bias = g.const(bias_src.inputs[0][0])
        out[f"mapping.layers.{i}.weight"] = weight
        out[f"mapping.layers.{i}.bias"] = bias.reshape(-1)
    slopes = {round(_scalar(g, p.inputs[1][0]), 6) for p in g.of_type("PReLU")}
    _check(slopes == {0.2}, f"leaky slopes {slopes}")
    gains = {round(_const_input(g, m.id)[0].item(), 5) for m in g.of_type("Multiply") if m.out_shapes[0] == (1, 512)
             and g.layers[m.inputs[0][0]].type == "PReLU"}
    _check(gains == {round(math.sqrt(2), 5)}, f"mapping gains {gains}")
    return out


def _style_branch(g: IRGraph, lid: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Trace a (1,C,1,1) modulation input back to ``scale * (style @ W.T + b)``: (W, b, scale)."""
    layer = g.layers[lid]
    scale = 1.0
    if layer.type == "Multiply":
        c, port = _const_input(g, lid)
        scale = float(c.reshape(-1)[0])
        layer = g.input_layer(lid, 1 - port)
    _check(layer.type == "Reshape", f"modulation via {layer.type}")
    add = g.input_layer(layer.id, 0)
    _check(add.type == "Add", f"modulation bias via {add.type}")
    bias, port = _const_input(g, add.id)
    mm = g.input_layer(add.id, 1 - port)
    _check(mm.type == "MatMul" and mm.attrs.get("transpose_b") == "true", "modulation MatMul")
    weight, _ = _const_input(g, mm.id)
    _check(g.input_layer(mm.id, 0).type == "Parameter", "modulation not fed by the style input")
    return weight, bias.reshape(-1), scale


def synthesis_state_dict(g: IRGraph, model: MobileStyleGAN) -> dict[str, np.ndarray]:
    """Map SynthesisNetwork.xml onto ``model.synthesis``'s names (see the module docstring)."""
    # Main-chain layers in topological order; the IR lists each kind in the order it is applied.
    mods, const_in = [], None
    for m in g.of_type("Multiply"):
        if len(m.out_shapes[0]) != 4 or m.out_shapes[0][2] == 1:
            continue  # a style-side scale, handled by _style_branch
        a, b = (g.layers[s] for s, _ in m.inputs)
        style, act = (a, b) if a.out_shapes[0][2:] == (1, 1) else (b, a)
        mods.append(_style_branch(g, style.id))
        if act.type == "Tile":  # the learned 4x4 constant, broadcast to the batch
            const_in = g.const(g.input_layer(g.input_layer(act.id, 0).id, 0).id)
    convs = [_const_input(g, c.id)[0] for c in g.of_type("Convolution")]
    dws = [_const_input(g, c.id)[0] for c in g.of_type("GroupConvolution")]
    noises, biases = [], []
    for add in g.of_type("Add"):
        try:
            c, _ = _const_input(g, add.id)
        except ValueError:
            continue
        if c.ndim == 4 and c.shape[1] == 1:
            noises.append(c)
        elif c.ndim == 4:
            biases.append(c.reshape(-1))
    slopes = {round(_scalar(g, p.inputs[1][0]), 6) for p in g.of_type("PReLU")}
    _check(slopes == {0.2}, f"leaky slopes {slopes}")
    haar = {round(float(abs(v)), 6) for t in g.of_type("GroupConvolutionBackpropData") for v in _const_input(g, t.id)[0].ravel()}
    _check(haar == {round(1 / math.sqrt(2), 6)}, f"wavelet filters {haar}")
    _check(const_in is not None, "no constant input")

    syn = model.synthesis
    n = len(syn.blocks)
    _check((len(mods), len(convs), len(dws), len(noises), len(biases)) == (3 * n + 2, 2 * n + 2, 2 * n, 2 * n + 1, 2 * n + 2),
           f"layer counts mods={len(mods)} convs={len(convs)} dw={len(dws)} noise={len(noises)} bias={len(biases)}")
    out: dict[str, np.ndarray] = {"synthesis.const": const_in}
    scales: dict[str, float] = {}

    def styled(prefix: str, module, mod, weight, noise, bias, dw=None) -> None:
        out[f"{prefix}.modulation.affine.weight"], out[f"{prefix}.modulation.affine.bias"] = mod[0], mod[1]
        scales[prefix] = mod[2]
        _check(math.isclose(mod[2], module.modulation.scale, rel_tol=1e-5), f"{prefix} scale {mod[2]}")
        out[f"{prefix}.weight"] = weight
        if dw is not None:
            out[f"{prefix}.weight_dw"] = dw.reshape(dw.shape[0], 1, *dw.shape[-2:])
        if noise is not None:
            out[f"{prefix}.noise"] = noise
        out[f"{prefix}.bias"] = bias

    styled("synthesis.conv1", syn.conv1, mods[0], convs[0], noises[0], biases[0])
    for i, block in enumerate(syn.blocks):
        p = f"synthesis.blocks.{i}"
        up = mods[1 + 3 * i]
        _check(up[2] == 1.0, f"{p} up-sampling modulation has a scale")
        out[f"{p}.up_modulation.affine.weight"], out[f"{p}.up_modulation.affine.bias"] = up[0], up[1]
        for j, conv in enumerate((block.conv1, block.conv2)):
            k = 1 + 2 * i + j
            styled(f"{p}.conv{j + 1}", conv, mods[2 + 3 * i + j], convs[k], noises[k], biases[k], dw=dws[2 * i + j])
    styled("synthesis.to_wavelets", syn.to_wavelets, mods[-1], convs[-1], None, biases[-1])
    return out


def ir_to_state_dict(src_dir: Path) -> dict[str, torch.Tensor]:
    """All weights of the wheel's two IR files, under :class:`MobileStyleGAN`'s names."""
    model = MobileStyleGAN()
    sd = mapping_state_dict(IRGraph(_find(src_dir, "MappingNetwork.xml")))
    sd.update(synthesis_state_dict(IRGraph(_find(src_dir, "SynthesisNetwork.xml")), model))
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}
    model.load_state_dict(tensors, strict=True)  # names and shapes must match exactly
    return tensors


def convert_stylegan(src_dir: Path, dest: Path) -> None:
    """Unpacked ``random-face`` wheel -> safetensors of :class:`MobileStyleGAN` weights."""
    from safetensors.torch import save_file

    save_file(ir_to_state_dict(src_dir), str(dest))


RECORD = register(
    ModelRecord(
        name="mobilestylegan_ffhq",
        kind="generator",
        filename="mobilestylegan_ffhq.safetensors",
        sha256="21cbaf08f28dd88f653f69832c3c6fc71ec724ece788f2bbd761d49f4b2ad2c6",
        # The IR is published in this PyPI wheel. Its upstream links (Google Drive, in the wheel's
        # configs/model_zoo.json) need gdown's confirmation handshake and could not be checked
        # from here, so PyPI is the only source.
        sources=(PackageSource("random-face==2021.7.21.1", convert_stylegan),),
        input_size=(1024, 1024),
        license="StyleGAN2 (NVIDIA Source Code License-NC) and FFHQ (CC BY-NC-SA 4.0): non-commercial use only.",
        description="MobileStyleGAN distilled from StyleGAN2-FFHQ: z (512) -> 1024x1024 RGB faces; covers and fake identities.",
        extra={"style_dim": STYLE_DIM, "output_range": "[-1, 1]", "truncation_mean_samples": 4096},
    )
)


def load_stylegan(device: str | torch.device = "cpu", path: str | Path | None = None) -> MobileStyleGAN:
    """Frozen :class:`MobileStyleGAN` in eval mode, with ``w_avg`` from 4,096 seeded samples."""
    from safetensors.torch import load_file

    gen = MobileStyleGAN()
    gen.load_state_dict(load_file(str(resolve(RECORD.name, path=path))), strict=True)
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    gen = gen.to(device)
    gen.set_w_avg()
    return gen


def latents(n: int, seed: int, style_dim: int = STYLE_DIM) -> torch.Tensor:
    """``n`` standard-normal z, drawn on the CPU from ``seed``: the same faces on any device.

    Row i does not depend on n (``latents(m, s)[:n] == latents(n, s)``), so a cover cache can grow.
    """
    return torch.randn(n, style_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_images(
    gen: MobileStyleGAN, n: int, seed: int, truncation: float = 0.7, size: int = 256, batch: int = 8
) -> torch.Tensor:
    """``n`` FFHQ-aligned faces, float (n, 3, size, size) in [0, 1] on the generator's device.

    ``img = clamp((G(w_avg + psi (mapping(z) - w_avg)) + 1) / 2, 0, 1)``, z from ``seed``; a size
    below 1024 is the exact area down-sampling of the 1024-px face (see ``SynthesisNetwork``).
    """
    dev = gen.w_avg.device
    z = latents(n, seed, gen.style_dim)
    out = [gen(z[i : i + batch].to(dev), truncation=truncation, size=size) for i in range(0, n, batch)]
    return ((torch.cat(out) + 1.0) * 0.5).clamp_(0.0, 1.0)


def canonical_theta(gen_size: int = 512) -> torch.Tensor:
    """``affine_grid`` theta taking a ``gen_size`` generator image to the canonical 256 crop.

    The fixed similarity transform ``FFHQ_LANDMARKS_256 -> CANONICAL_256`` (scale 0.979, shift
    about (2, 4) px), inverted to map canonical pixels back to generator pixels.
    """
    from ..align import CANONICAL_256, invert_affine, pixel_affine_to_theta, similarity_transform

    m = similarity_transform(FFHQ_LANDMARKS_256 * (gen_size / 256), CANONICAL_256)
    return pixel_affine_to_theta(invert_affine(m), gen_size, 256)


def to_canonical(img: torch.Tensor) -> torch.Tensor:
    """Warp generator faces (B, 3, S, S), S = 256 or 512, to the canonical 256 template.

    Bilinear at the source size, then 2x2 averaging when S = 512 (sharper than resampling 512 -> 256
    directly, which would alias). Differentiable; runs on the tensor's device.
    """
    size = img.shape[-1]
    if size not in (256, 512):
        raise ValueError(f"expected 256- or 512-px generator images, got {size}")
    theta = canonical_theta(size)
    th = theta.to(img.device, img.dtype).unsqueeze(0).expand(img.shape[0], 2, 3)
    grid = F.affine_grid(th, [img.shape[0], 3, size, size], align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return F.avg_pool2d(out, 2) if size == 512 else out


def weights_fingerprint(gen: MobileStyleGAN) -> str:
    """sha256 over the generator's tensors (names, shapes, float32 bytes): names derived files."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(gen.state_dict().items()):
        h.update(k.encode() + str(tuple(v.shape)).encode() + v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class _SynthesisAt512(torch.nn.Module):
    def __init__(self, gen: MobileStyleGAN):
        super().__init__()
        self.synthesis = gen.synthesis

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.synthesis(w, size=512)


def onnx_synthesis(gen: MobileStyleGAN, batch: int = 4) -> Callable[[torch.Tensor], torch.Tensor]:
    """CPU fast path: ``w (b <= batch, 512) -> 512-px faces in [-1, 1]`` run by onnxruntime.

    onnxruntime (a core dependency) runs this network in about 0.55x the CPU time of PyTorch, with
    the same output within 1e-4. The ONNX file is exported from ``gen`` once, for a fixed batch
    (the folded depthwise modulation makes the group count batch-dependent), and cached next to
    the weights under a fingerprint of them; shorter batches are padded.
    """
    import copy
    import os
    import tempfile

    import onnxruntime as ort

    path = RECORD.cache_path().with_name(f"synthesis512_b{batch}_{weights_fingerprint(gen)[:16]}.onnx")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        module = _SynthesisAt512(copy.deepcopy(gen).cpu()).eval()  # never move the caller's model
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            part = Path(tmp) / path.name
            torch.onnx.export(module, (torch.zeros(batch, gen.style_dim),), str(part), dynamo=False,
                              input_names=["w"], output_names=["img"], opset_version=17)
            os.replace(part, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        padded = torch.cat([w, w.new_zeros(batch - n, w.shape[1])]) if n < batch else w
        return torch.from_numpy(session.run(None, {"w": padded.float().cpu().numpy()})[0][:n])

    return run


_ONNX_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def synthesizer(gen: MobileStyleGAN, backend: str = "auto", batch: int = 4) -> Callable[[torch.Tensor], torch.Tensor]:
    """``w -> 512-px faces in [-1, 1]`` by ``backend``: "torch", "onnx" (onnxruntime on the CPU, see
    :func:`onnx_synthesis`; sessions are kept per generator) or "auto" (onnx when ``gen`` is on the CPU)."""
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    if backend == "torch" or (backend == "auto" and gen.w_avg.device.type != "cpu"):
        return lambda w: gen.synthesis(w, size=512)
    runners = _ONNX_RUNNERS.setdefault(gen, {})
    key = (batch, torch.get_num_threads())
    if key not in runners:
        try:
            runners[key] = onnx_synthesis(gen, batch)
        except Exception as e:  # noqa: BLE001 - "auto" only prefers ONNX; any export/runtime failure falls back
            if backend == "onnx":
                raise
            warnings.warn(f"onnxruntime path unavailable ({type(e).__name__}: {e}); generating with PyTorch", stacklevel=2)
            runners[key] = lambda w: gen.synthesis(w, size=512)
    return runners[key]


@torch.no_grad()
def _canonical_batch(gen: MobileStyleGAN, run: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
                     truncation: float) -> torch.Tensor:
    dev = gen.w_avg.device
    img = run(gen.style(z.to(dev), truncation)).to(dev)
    return to_canonical(((img + 1.0) * 0.5).clamp(0.0, 1.0)).clamp_(0.0, 1.0)


def stylegan_faces_canonical(
    gen: MobileStyleGAN, n: int, seed: int, truncation: float = 0.7, batch: int = 4, backend: str = "auto"
) -> torch.Tensor:
    """``n`` StyleGAN2-FFHQ faces in the canonical 256 template: float (n, 3, 256, 256) in [0, 1].

    Generated at 512 px (exact area down-sampling of the 1024-px face), then one fixed similarity
    warp for every face (see ``FFHQ_LANDMARKS_256``); ``z`` comes from ``seed`` on the CPU, so a
    seed gives the same faces on any device (and backend, within 1e-4). Output stays on the
    generator's device. ``backend``: see :func:`synthesizer`.
    """
    run = synthesizer(gen, backend, batch)
    z = latents(n, seed, gen.style_dim)
    return torch.cat([_canonical_batch(gen, run, z[i : i + batch], truncation) for i in range(0, n, batch)])


def fake_faces_canonical(generator: MobileStyleGAN, n: int, seed: int) -> torch.Tensor:
    """Same interface as ``facecloak.zoo.dcgan.fake_faces_canonical``: :func:`stylegan_faces_canonical`
    at the default truncation 0.7, so callers can swap the fake-face source by name."""
    return stylegan_faces_canonical(generator, n, seed)


def write_stylegan_covers(
    out_dir: str | Path,
    n: int,
    seed: int,
    truncation: float = 0.7,
    gen: MobileStyleGAN | None = None,
    device: str | torch.device = "cpu",
    batch: int = 4,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "auto",
) -> list[Path]:
    """Cache ``n`` canonical 256 StyleGAN faces as ``out_dir/{i:06d}.png`` (RGB); return all n paths.

    Face i is the one :func:`stylegan_faces_canonical` gives at index i for ``(seed, truncation)``,
    so the cache is resumable: existing files are kept and only missing indices are generated.
    ``out_dir/covers.json`` records the model, seed and truncation; a directory made with other
    settings is refused rather than mixed. ``progress(done, n)`` is called after each batch.
    ``backend``: see :func:`synthesizer`; both give the same PNGs up to one grey level.
    """
    import json

    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": RECORD.name, "sha256": RECORD.sha256, "seed": seed, "truncation": truncation}
    manifest = out / "covers.json"
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if {k: old.get(k) for k in meta} != meta:
            raise ValueError(f"{out} holds covers made with {old}, not {meta}: use another directory or empty it")
    manifest.write_text(json.dumps(meta))
    paths = [out / f"{i:06d}.png" for i in range(n)]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo:
        gen = gen or load_stylegan(device)
        z = latents(n, seed, gen.style_dim)
        run = synthesizer(gen, backend, batch)
        for k in range(0, len(todo), batch):
            idx = todo[k : k + batch]
            crops = _canonical_batch(gen, run, z[idx], truncation)
            u8 = (crops * 255.0).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
            for i, face in zip(idx, u8):
                tmp = paths[i].with_suffix(".part.png")
                cv2.imwrite(str(tmp), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
                tmp.replace(paths[i])  # a killed run never leaves a half-written PNG
            if progress is not None:
                progress(n - len(todo) + k + len(idx), n)
    return paths
