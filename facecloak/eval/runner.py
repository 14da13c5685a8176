"""``facecloak eval``: de-identify a benchmark with every method, then measure it (paper 4.3, 4.8, 4.9).

For each method M and each recognizer R (EN = ArcFace is the white box, the rest are black
boxes that played no part in training):

* quality: PSNR, SSIM, LPIPS-alex between C and D, per image, then mean and median;
* 1:1: the best-accuracy threshold of R on the *original* pairs, then ASR = share of genuine
  pairs (D(I1), I2) judged impostor; "Original" is the same share before de-identification;
* 1:N: Rank-1, Rank-5 and CMC of de-identified probes against original galleries, averaged
  over the 6 ordered (probe set, gallery set) pairs;
* robustness: ASR again after each image-processing attack on D;
* time per face.

Embeddings of the original faces are cached on disk per recognizer, so a second run with
another method only recomputes what changed.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..cache import cache_dir
from . import attacks as A
from . import protocols as P
from .benchmark import Benchmark

BLACK_BOXES = ("facenet_casia", "sface", "dlib_resnet")
WHITE_BOX = "arcface_mbf"
ALL_METHODS = ("facecloak_fast", "facecloak_strong", "blur", "pixelate", "mask", "lgc", "tip_im", "fawkes")
ATTACKS = {"median_blur": A.median_blur, "gaussian_blur": A.gaussian_blur, "jpeg": A.jpeg, "bit_depth": A.bit_depth}


@dataclass
class EvalConfig:
    benchmark: str = "orl"
    data: str | None = None
    out: str = "eval-out"
    methods: tuple[str, ...] = ALL_METHODS
    recognizers: tuple[str, ...] = (WHITE_BOX, *BLACK_BOXES)
    weights: str | None = None
    seed: int = 0
    device: str = "auto"
    batch_size: int = 16
    # Iteration budgets sized so the offline benchmark runs on a 2-core CPU in minutes; scale
    # them with `--steps-scale` (e.g. 5 on a GPU for Fawkes' original iteration counts).
    strong_steps: int = 20
    lgc_steps: int = 20
    tip_im_steps: int = 30
    fawkes_steps: int = 40
    sweep: bool = False
    limit: int | None = None  # de-identify at most this many images (quick runs, tests)
    grid_faces: int = 4


@dataclass
class Context:
    cfg: EvalConfig
    device: torch.device
    en: torch.nn.Module
    cloaker: object | None = None


# ------------------------------------------------------------------ methods
def _facecloak(mode: str, scale: float = 1.0):
    def run(x: torch.Tensor, keys: list[str], ctx: Context) -> torch.Tensor:
        import random

        ck = ctx.cloaker
        ck.cfg.mode = mode
        rngs = [random.Random(f"{ctx.cfg.seed}:{k}") for k in keys]  # one fake identity per face, reproducible
        fake, _ = ck.identities_for(x, rngs, list(range(len(keys))))
        d = ck.protect_aligned(x, fake)
        return (x + scale * (d - x)).clamp(0, 1) if scale != 1.0 else d

    return run


def _baseline(name: str, **params):
    def run(x: torch.Tensor, keys: list[str], ctx: Context) -> torch.Tensor:
        from . import baselines as B

        fn = {"blur": B.gaussian_blur, "pixelate": B.pixelate, "mask": B.black_mask, "lgc": B.lgc, "tip_im": B.tip_im, "fawkes": B.fawkes_style}[name]
        return fn(x.to(ctx.device), ctx.en, **params).detach().cpu()

    return run


def method_table(cfg: EvalConfig) -> dict[str, Callable]:
    return {
        "facecloak_fast": _facecloak("fast"),
        "facecloak_strong": _facecloak("strong"),
        "blur": _baseline("blur"),
        "pixelate": _baseline("pixelate"),
        "mask": _baseline("mask"),
        "lgc": _baseline("lgc", steps=cfg.lgc_steps, seed=cfg.seed),
        "tip_im": _baseline("tip_im", steps=cfg.tip_im_steps, seed=cfg.seed),
        "fawkes": _baseline("fawkes", steps=cfg.fawkes_steps, seed=cfg.seed),
    }


def sweep_table(cfg: EvalConfig) -> dict[str, Callable]:
    """Quality-vs-ASR sweep (paper Fig. 14): LGC over eps = 1..7 (/255) and facecloak over
    strength s, D_s = C + s (D - C) (a post-hoc scale of the trained residual; retraining per
    lambda as in the paper is `facecloak train --lambda-near/--lambda-far`)."""
    table = {f"lgc_eps{e}": _baseline("lgc", eps=e / 255, steps=cfg.lgc_steps, seed=cfg.seed) for e in range(1, 8)}
    table.update({f"facecloak_s{s:g}": _facecloak("fast", s) for s in (0.5, 0.75, 1.25, 1.5)})
    return table


# ------------------------------------------------------------------ embeddings
def to_batch(imgs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def embed(model, imgs: list[np.ndarray], batch: int = 32) -> np.ndarray:
    out = [model(to_batch(imgs[i : i + batch]).to(next(iter(model.parameters()), torch.zeros(0)).device)).cpu().numpy() for i in range(0, len(imgs), batch)]
    return np.concatenate(out) if out else np.zeros((0, getattr(model, "dim", 1)))


def cached_original_embeddings(bench: Benchmark, name: str, model, originals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Embeddings of the original crops, cached per recognizer and crop file (path + mtime)."""
    import hashlib

    root = cache_dir() / "eval-emb" / name
    root.mkdir(parents=True, exist_ok=True)
    tags = {k: hashlib.sha256(f"{p.resolve()}:{p.stat().st_mtime_ns}".encode()).hexdigest()[:16] for k, p in bench.crops.items()}
    path = root / f"{bench.name}.npz"
    have = dict(np.load(path)) if path.exists() else {}
    todo = [k for k in bench.crops if tags[k] not in have]
    if todo:
        embs = embed(model, [originals[k] for k in todo])
        have.update({tags[k]: e for k, e in zip(todo, embs)})
        np.savez(path, **have)
    return {k: have[tags[k]] for k in bench.crops}


# ------------------------------------------------------------------ main entry
def run_eval(bench: Benchmark, cfg: EvalConfig, progress: Callable[[str, int, int], None] | None = None) -> dict:
    from ..pretrained import load_recognizer, resolve_device
    from ..train.data import read_rgb

    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    step = progress or (lambda *a: None)
    originals = {k: read_rgb(p) for k, p in bench.crops.items()}
    deid_keys = sorted({a for a, _, s in bench.pairs if s} | {k for s in bench.id_sets for k in s})
    if cfg.limit:
        deid_keys = deid_keys[: cfg.limit]
    en = load_recognizer(WHITE_BOX, device)
    ctx = Context(cfg, device, en)
    methods = {m: f for m, f in method_table(cfg).items() if m in cfg.methods}
    if cfg.sweep:
        methods.update(sweep_table(cfg))
    if any(m.startswith("facecloak") for m in methods):
        from ..cloak import CloakConfig
        from ..pretrained import build_cloaker

        ctx.cloaker = build_cloaker(weights=cfg.weights, device=str(device), config=CloakConfig(seed=cfg.seed, strong_steps=cfg.strong_steps, batch_size=cfg.batch_size))

    deid: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for i, (name, fn) in enumerate(methods.items()):
        step(f"de-identify: {name}", i, len(methods))
        deid[name], seconds[name] = _deidentify(fn, originals, deid_keys, ctx)

    step("quality (PSNR, SSIM, LPIPS-alex)", 0, 1)
    quality = {m: _quality(originals, d) for m, d in deid.items()}

    recs = {}
    for name in cfg.recognizers:
        try:
            recs[name] = load_recognizer(name, device)
        except ImportError as e:  # dlib is the optional `eval` extra
            import warnings

            recs[name] = None
            warnings.warn(f"skipping {name}: {e}; install facecloak[eval]", stacklevel=2)
    report = _protocols(bench, originals, deid, recs, step)
    for m in deid:
        report["methods"][m]["quality"] = quality[m]
        report["methods"][m]["seconds_per_face"] = seconds[m]
    report.update(
        {
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "data": {**bench.describe(), "deidentified_faces": len(deid_keys)},
            "recognizers": {"white_box": WHITE_BOX, "black_box": [r for r in cfg.recognizers if r != WHITE_BOX]},
            "software": _versions(),
            "device": str(device),
        }
    )
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_np))
    from .report import write_markdown, write_plots

    step("report and plots", 0, 1)
    write_markdown(report, out / "report.md")
    write_plots(report, originals, deid, deid_keys[: cfg.grid_faces], out)
    return report


def _deidentify(fn, originals, keys, ctx) -> tuple[dict[str, np.ndarray], float]:
    out: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for i in range(0, len(keys), ctx.cfg.batch_size):
        chunk = keys[i : i + ctx.cfg.batch_size]
        x = to_batch([originals[k] for k in chunk])
        d = fn(x, chunk, ctx)
        d8 = (d.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # as saved to disk
        out.update(zip(chunk, d8))
    return out, (time.perf_counter() - t0) / max(1, len(keys))


def _quality(originals, deid) -> dict:
    from ..models.lpips import load_lpips
    from .metrics import psnr, ssim, summarise

    lp = _lpips_alex_cached(load_lpips)
    keys = sorted(deid)
    ps = [psnr(originals[k], deid[k]) for k in keys]
    ss = [ssim(originals[k], deid[k]) for k in keys]
    with torch.no_grad():
        lps = []
        for i in range(0, len(keys), 32):
            a = to_batch([originals[k] for k in keys[i : i + 32]])
            b = to_batch([deid[k] for k in keys[i : i + 32]])
            lps += lp.from01(a, b).tolist()
    finite = [p for p in ps if np.isfinite(p)] or [float("inf")]
    return {"psnr": summarise(finite), "ssim": summarise(ss), "lpips": summarise(lps), "n": len(keys)}


_LPIPS = {}


def _lpips_alex_cached(loader):
    if "alex" not in _LPIPS:
        _LPIPS["alex"] = loader("alex")
    return _LPIPS["alex"]


def _protocols(bench, originals, deid, recs, step) -> dict:
    methods: dict[str, dict] = {m: {"asr": {}, "rank1": {}, "rank5": {}, "cmc": {}, "robustness": {a: {} for a in ATTACKS}} for m in deid}
    original = {"asr": {}, "rank1": {}, "rank5": {}, "cmc": {}, "threshold": {}, "accuracy": {}, "auc": {}}
    genuine = [(a, b) for a, b, s in bench.pairs if s]
    for ri, (rname, model) in enumerate(recs.items()):
        if model is None:
            continue
        step(f"recognizer {rname}", ri, len(recs))
        emb = cached_original_embeddings(bench, rname, model, originals)
        scores = np.array([float(emb[a] @ emb[b]) for a, b, _ in bench.pairs])
        same = np.array([s for _, _, s in bench.pairs])
        thr, acc = P.best_accuracy_threshold(scores, same)
        original["threshold"][rname], original["accuracy"][rname] = thr, acc
        original["auc"][rname] = P.roc_auc(scores, same)
        original["asr"][rname] = P.attack_success_ratio(scores[same], thr)
        ident = _identification(bench, emb, emb)
        original["rank1"][rname], original["rank5"][rname], original["cmc"][rname] = ident["rank1"], ident["rank5"], ident["cmc"].tolist()
        for m, d in deid.items():
            pairs = [(a, b) for a, b in genuine if a in d]
            demb = dict(zip(sorted(d), embed(model, [d[k] for k in sorted(d)])))
            methods[m]["asr"][rname] = _asr(pairs, demb, emb, thr)
            if all(k in demb for s in bench.id_sets for k in s) and len(bench.id_sets[0]) >= 2:
                ident = _identification(bench, demb, emb)
                methods[m]["rank1"][rname], methods[m]["rank5"][rname], methods[m]["cmc"][rname] = ident["rank1"], ident["rank5"], ident["cmc"].tolist()
            for aname, attack in ATTACKS.items():
                keys = sorted({a for a, _ in pairs})
                aemb = dict(zip(keys, embed(model, [attack(d[k]) for k in keys])))
                methods[m]["robustness"][aname][rname] = _asr(pairs, aemb, emb, thr)
    return {"original": original, "methods": methods}


def _asr(pairs, demb, emb, thr) -> float:
    s = np.array([float(demb[a] @ emb[b]) for a, b in pairs])
    return P.attack_success_ratio(s, thr) if len(s) else float("nan")


def _identification(bench, probe_emb, gallery_emb) -> dict:
    sets = bench.id_sets
    if len(sets[0]) < 2:
        return {"rank1": float("nan"), "rank5": float("nan"), "cmc": np.array([])}
    ids = [[bench.identity[k] for k in s] for s in sets]

    def sim(p: int, g: int) -> np.ndarray:
        a = np.stack([probe_emb[k] for k in sets[p]])
        b = np.stack([gallery_emb[k] for k in sets[g]])
        return a @ b.T

    return P.identification_over_set_pairs(ids, sim, max_rank=max(5, min(10, len(sets[0]))))


def _versions() -> dict:
    import importlib.metadata as md

    v = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("facecloak", "torch", "torchvision", "facexlib", "onnxruntime", "opencv-python-headless", "dlib-bin", "numpy"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return v


def _np(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))
