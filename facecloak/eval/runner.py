"""``facecloak eval``: de-identify a benchmark with every method, then measure it (paper 4.3, 4.8, 4.9).

For each method M and each recognizer R (EN = ArcFace is the white box, the rest are black
boxes that played no part in training):

* quality: PSNR, SSIM, LPIPS-alex between C and D, per image, then mean and median;
* thresholds of R, three kinds (``facecloak.eval.thresholds``): best accuracy on the benchmark's
  *original* pairs (the paper's protocol), FAR = 1e-3 on a training-only impostor set of
  >= 100,000 pairs (``facecloak.eval.impostors``), and R's published operating point;
* 1:1: ASR = share of genuine pairs (D(I1), I2) judged impostor, at each threshold kind
  (``asr``, ``asr_far``, ``asr_published``); same-photo ASR = share of faces D(I) judged another
  person than their own original I (``asr_same``, ``asr_same_far``, ``asr_same_published``);
* 1:N: Rank-1, Rank-5 and CMC of de-identified probes against original galleries, averaged
  over the 6 ordered (probe set, gallery set) pairs;
* robustness: ASR again after each image-processing attack on D, for every method including
  ``original`` (D = C), so the attack's own effect on recognition is visible;
* end to end (``--e2e``, ``facecloak.eval.e2e``): the probe photos protected as the CLI does,
  re-detected by dlib's HOG detector; ``methods.<name>.e2e`` holds the same ASR keys and quality;
* time per face.

``methods.original`` is the no-change row: C scored as if it were D.

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
from . import thresholds as T
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
    bank: str | None = None  # a user's own fake-identity bank (`--bank`); None: the shipped one
    seed: int = 0
    device: str = "auto"
    batch_size: int = 16
    # The adversarial baselines run at their own default budgets (the defaults of
    # facecloak.eval.baselines); `--steps-scale` scales these and strong mode's steps.
    # Strong mode's is its preset's own (facecloak.strong.PRESETS) unless `--steps-scale` sets it.
    strong_steps: int | None = None
    strength: str = "medium"  # as `protect --strength`: the fast-mode scale and the strong-mode preset
    lgc_steps: int = 20
    tip_im_steps: int = 50
    fawkes_steps: int = 100
    sweep: bool = False
    sweep_strengths: tuple[float, ...] = (0.5, 0.75, 1.25, 1.5)  # fast-mode s; s = 1 is facecloak_fast itself
    limit: int | None = None  # de-identify at most this many images (quick runs, tests)
    grid_faces: int = 4
    e2e: bool = True  # whole-photo protocol, where the benchmark has photos
    impostor_fakes: str = "dcgan"  # fake-face source of the FAR impostor set (impostors.FAKE_SOURCES)
    impostor_n_fakes: int = 320


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

        from ..cloak import scale_residual

        ck = ctx.cloaker
        ck.cfg.mode = mode
        rngs = [random.Random(f"{ctx.cfg.seed}:{k}") for k in keys]  # one fake identity per face, reproducible
        fake, _ = ck.identities_for(x, rngs, list(range(len(keys))))
        d = ck.protect_aligned(x, fake)
        return scale_residual(x, d, scale)

    return run


def _baseline(name: str, **params):
    def run(x: torch.Tensor, keys: list[str], ctx: Context) -> torch.Tensor:
        from . import baselines as B

        fn = {"blur": B.gaussian_blur, "pixelate": B.pixelate, "mask": B.black_mask, "lgc": B.lgc, "tip_im": B.tip_im, "fawkes": B.fawkes_style}[name]
        return fn(x.to(ctx.device), ctx.en, **params).detach().cpu()

    return run


def _original(x: torch.Tensor, keys: list[str], ctx: Context) -> torch.Tensor:
    """The no-change baseline: D = C."""
    return x


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


SWEEP_LGC_EPS = tuple(range(1, 8))  # /255


def sweep_table(cfg: EvalConfig) -> dict[str, Callable]:
    """Quality-vs-ASR sweep (paper Fig. 14) of the requested methods only: facecloak over strength
    s, D_s = C + s (D - C), when ``facecloak_fast`` is in ``cfg.methods`` (a post-hoc scale of the
    trained residual; retraining per lambda as in the paper is `facecloak train --lambda-near/
    --lambda-far`), and LGC over eps = 1..7 (/255) when ``lgc`` is. Each point costs a full
    de-identification and every recognizer, so methods not asked for are not swept."""
    table: dict[str, Callable] = {}
    if "facecloak_fast" in cfg.methods:
        table.update({f"facecloak_s{s:g}": _facecloak("fast", s) for s in cfg.sweep_strengths})
    if "lgc" in cfg.methods:
        table.update({f"lgc_eps{e}": _baseline("lgc", eps=e / 255, steps=cfg.lgc_steps, seed=cfg.seed) for e in SWEEP_LGC_EPS})
    return table


# ------------------------------------------------------------------ embeddings
def to_batch(imgs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def embed(model, imgs: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """*Raw* embeddings (``model.embed``, before L2 normalisation): dlib's published rule needs
    them. Cosines normalise them again (``thresholds.rule_scores``)."""
    dev = next(iter(model.parameters()), torch.zeros(0)).device
    out = [model.embed(to_batch(imgs[i : i + batch]).to(dev)).float().cpu().numpy() for i in range(0, len(imgs), batch)]
    return np.concatenate(out) if out else np.zeros((0, getattr(model, "dim", 1)))


def cached_original_embeddings(bench: Benchmark, name: str, model, originals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Embeddings of the original crops, cached per recognizer and crop file (path + mtime)."""
    import hashlib

    root = cache_dir() / "eval-emb" / name
    root.mkdir(parents=True, exist_ok=True)
    tags = {k: hashlib.sha256(f"{p.resolve()}:{p.stat().st_mtime_ns}".encode()).hexdigest()[:16] for k, p in bench.crops.items()}
    from .impostors import EMB_VERSION

    path = root / f"{bench.name}-v{EMB_VERSION}.npz"
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
    methods = {"original": _original, **{m: f for m, f in method_table(cfg).items() if m in cfg.methods}}
    if cfg.sweep:
        methods.update(sweep_table(cfg))
    e2e_modes = [m.split("_", 1)[1] for m in ("facecloak_fast", "facecloak_strong") if m in cfg.methods] if cfg.e2e and bench.photos else []
    if any(m.startswith("facecloak") for m in methods):
        from ..cloak import CloakConfig
        from ..pretrained import build_cloaker

        ctx.cloaker = build_cloaker(weights=cfg.weights, bank=cfg.bank, device=str(device), config=CloakConfig(seed=cfg.seed, strength=cfg.strength, strong_steps=cfg.strong_steps, batch_size=cfg.batch_size))

    timing: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:  # wall seconds per phase, so a slow run shows where its time went
        now = time.perf_counter()
        timing[name] = round(now - clock[0], 1)
        clock[0] = now

    lap("load models")
    deid: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for i, (name, fn) in enumerate(methods.items()):
        step(f"de-identify: {name}", i, len(methods))
        deid[name], seconds[name] = _deidentify(fn, originals, deid_keys, ctx)

    step("quality (PSNR, SSIM, LPIPS-alex)", 0, 1)
    quality = {m: _quality(originals, d) for m, d in deid.items()}
    lap("de-identify + quality")

    e2e = None
    if e2e_modes or (cfg.e2e and bench.photos):
        e2e = _run_e2e(bench, deid_keys, originals, e2e_modes, ctx, step)
        lap("e2e: protect photos + HOG")

    recs = {}
    for name in cfg.recognizers:
        try:
            recs[name] = load_recognizer(name, device)
        except ImportError as e:  # dlib is the optional `eval` extra
            import warnings

            recs[name] = None
            warnings.warn(f"skipping {name}: {e}; install facecloak[eval]", stacklevel=2)
    step("impostor set (training faces + fakes)", 0, 1)
    from .impostors import training_impostor_set

    iset = training_impostor_set(cfg.impostor_fakes, cfg.impostor_n_fakes, seed=7)
    report = _protocols(bench, originals, deid, recs, iset, step, e2e)
    lap("recognizers: thresholds, ASR, attacks")
    for m in deid:
        report["methods"][m]["quality"] = quality[m]
        report["methods"][m]["seconds_per_face"] = seconds[m]
    if e2e is not None:
        for m in e2e.views:
            if m in report["methods"]:
                report["methods"][m]["e2e"]["quality"] = _quality(e2e.reference, e2e.same_place[m])
                report["methods"][m]["e2e"]["detected"] = e2e.detected[m]
                report["methods"][m]["e2e"]["seconds_per_photo"] = e2e.seconds.get(m.split("_", 1)[-1])
    report.update(
        {
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "data": {**bench.describe(), "deidentified_faces": len(deid_keys), "impostors": iset.description,
                     "e2e": e2e.description if e2e is not None else None},
            "recognizers": {"white_box": WHITE_BOX, "black_box": [r for r in cfg.recognizers if r != WHITE_BOX]},
            "software": _versions(),
            "device": str(device),
            "timing_seconds": timing,
        }
    )
    if ctx.cloaker is not None:
        report["weights"] = weights_provenance(cfg)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_np))
    from .report import write_markdown, write_plots

    step("report and plots", 0, 1)
    write_markdown(report, out / "report.md")
    write_plots(report, originals, deid, deid_keys[: cfg.grid_faces], out)
    return report


def weights_provenance(cfg: EvalConfig) -> dict:
    """Which hiding network and bank the facecloak rows measured: path, sha256 and the network's
    header (model_version, config), so a report still names its weights after the files change."""
    from safetensors import safe_open

    from ..zoo.registry import resolve, sha256_file

    hn = resolve("hiding_net", path=cfg.weights)
    bank = Path(cfg.bank) if cfg.bank else resolve("fake_identity_bank")
    with safe_open(str(hn), framework="numpy") as f:
        meta = f.metadata() or {}
    with safe_open(str(bank), framework="numpy") as f:
        n_fakes = f.get_slice("features").get_shape()[0]
    header = {k: json.loads(meta[k]) for k in ("model_version", "config") if k in meta}
    return {"hiding_net": {"path": str(hn), "sha256": sha256_file(hn), **header},
            "bank": {"path": str(bank), "sha256": sha256_file(bank), "fakes": n_fakes}}


def _run_e2e(bench, deid_keys, originals, modes, ctx, step):
    """Whole-photo protocol for the facecloak modes (the only methods that protect photos)."""
    from ..cloak import CloakConfig, Cloaker
    from .e2e import run_e2e

    probes = [k for k in deid_keys if k in bench.photos]
    gallery = sorted({b for a, b, s in bench.pairs if s and a in probes} & set(bench.photos))
    ck = ctx.cloaker

    def make_cloaker(mode: str):
        # What `facecloak protect --mode MODE --strength S --seed SEED` builds: CloakConfig's defaults otherwise.
        return Cloaker(ck.hn, ck.en, ck.bank, ck.detector, CloakConfig(mode=mode, strength=ctx.cfg.strength, seed=ctx.cfg.seed), device=ck.device)

    retina = ck.detector if ck is not None else None
    return run_e2e(bench.photos, probes, gallery, originals, modes, make_cloaker, retina, progress=lambda s: step(s, 0, 1))


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


@dataclass
class OperatingPoints:
    """One recognizer's thresholds, in score units (genuine iff score >= threshold)."""

    best_accuracy: float
    far: float
    published: T.PublishedRule | None

    def asr(self, a: np.ndarray, b: np.ndarray, prefix: str = "asr") -> dict[str, float]:
        """ASR of pairs (a_i, b_i) of raw embeddings at every kind: ``{prefix, prefix_far, prefix_published}``."""
        if len(a) == 0:
            return {prefix: float("nan"), f"{prefix}_far": float("nan"), f"{prefix}_published": float("nan")}
        cos = T.rule_scores("cosine", a, b)
        out = {prefix: P.attack_success_ratio(cos, self.best_accuracy), f"{prefix}_far": P.attack_success_ratio(cos, self.far)}
        p = self.published
        out[f"{prefix}_published"] = P.attack_success_ratio(T.rule_scores(p.metric, a, b), p.score_threshold()) if p else None
        return out


def _fit_operating_points(rname, model, bench, emb, iset) -> tuple[OperatingPoints, dict, dict]:
    """(operating points, thresholds report entry, original-faces stats) of one recognizer."""
    from .impostors import fit_far_threshold, impostor_embeddings

    e = {k: v for k, v in emb.items()}
    a = np.stack([e[x] for x, _, _ in bench.pairs])
    b = np.stack([e[y] for _, y, _ in bench.pairs])
    scores = T.rule_scores("cosine", a, b)
    same = np.array([s for _, _, s in bench.pairs])
    best, acc = P.best_accuracy_threshold(scores, same)
    far, n_pairs = fit_far_threshold(impostor_embeddings(rname, model, iset, embed), iset.labels)
    pub = T.PUBLISHED.get(rname)
    op = OperatingPoints(best, far, pub)
    entry = {"best_accuracy": best, "far_1e-3": far, "published": pub.value if pub else None,
             "published_metric": pub.metric if pub else None, "published_source": pub.source if pub else None,
             "impostor_pairs": n_pairs, "far_fitted_on": "training faces + fakes only"}
    if pub and pub.metric == "euclidean_raw":
        med = float(np.median(np.linalg.norm(np.stack(list(e.values())), axis=1)))
        entry["published_cos_at_median_norm"] = T.cosine_equivalent(pub.value, med, med)
        entry["median_raw_norm"] = med
    stats = {"threshold": best, "accuracy": acc, "auc": P.roc_auc(scores, same)}
    return op, entry, stats


def _protocols(bench, originals, deid, recs, iset, step, e2e=None) -> dict:
    empty = lambda: {"asr": {}, "rank1": {}, "rank5": {}, "cmc": {}}  # noqa: E731
    methods: dict[str, dict] = {m: {**empty(), "robustness": {a: {} for a in ATTACKS}, "robustness_far": {a: {} for a in ATTACKS}} for m in deid}
    if e2e is not None:
        for m in e2e.views:
            methods.setdefault(m, {**empty(), "robustness": {}, "robustness_far": {}})["e2e"] = {}
    original = {"asr": {}, "rank1": {}, "rank5": {}, "cmc": {}, "threshold": {}, "accuracy": {}, "auc": {}}
    thresholds: dict[str, dict] = {}
    genuine = [(a, b) for a, b, s in bench.pairs if s]
    for ri, (rname, model) in enumerate(recs.items()):
        if model is None:
            continue
        step(f"recognizer {rname}", ri, len(recs))
        emb = cached_original_embeddings(bench, rname, model, originals)
        op, thresholds[rname], stats = _fit_operating_points(rname, model, bench, emb, iset)
        for k, v in stats.items():
            original[k][rname] = v
        original["asr"][rname] = P.attack_success_ratio(T.rule_scores("cosine", *_stack(genuine, emb, emb)), op.best_accuracy)
        ident = _identification(bench, emb, emb)
        original["rank1"][rname], original["rank5"][rname], original["cmc"][rname] = ident["rank1"], ident["rank5"], ident["cmc"].tolist()
        for m, d in deid.items():
            pairs = [(a, b) for a, b in genuine if a in d]
            demb = dict(zip(sorted(d), embed(model, [d[k] for k in sorted(d)])))
            _put(methods[m], rname, op.asr(*_stack(pairs, demb, emb)))
            keys = sorted(d)
            _put(methods[m], rname, op.asr(*_stack([(k, k) for k in keys], demb, emb), prefix="asr_same"))
            if all(k in demb for s in bench.id_sets for k in s) and len(bench.id_sets[0]) >= 2:
                ident = _identification(bench, demb, emb)
                methods[m]["rank1"][rname], methods[m]["rank5"][rname], methods[m]["cmc"][rname] = ident["rank1"], ident["rank5"], ident["cmc"].tolist()
            probes = sorted({a for a, _ in pairs})
            for aname, attack in ATTACKS.items():
                aemb = dict(zip(probes, embed(model, [attack(d[k]) for k in probes])))
                r = op.asr(*_stack(pairs, aemb, emb))
                methods[m]["robustness"][aname][rname] = r["asr"]
                methods[m]["robustness_far"][aname][rname] = r["asr_far"]
        if e2e is not None:
            gal = dict(zip(sorted(e2e.gallery), embed(model, [e2e.gallery[k] for k in sorted(e2e.gallery)])))
            for m, views in e2e.views.items():
                vemb = dict(zip(sorted(views), embed(model, [views[k] for k in sorted(views)])))
                pairs = [(a, b) for a, b in genuine if a in vemb and b in gal]
                _put(methods[m]["e2e"], rname, op.asr(*_stack(pairs, vemb, gal)))
                _put(methods[m]["e2e"], rname, op.asr(*_stack([(k, k) for k in sorted(vemb)], vemb, gal), prefix="asr_same"))
    return {"original": original, "thresholds": thresholds, "methods": methods}


def _stack(pairs, left: dict, right: dict) -> tuple[np.ndarray, np.ndarray]:
    """(left[a] for a, _ in pairs), (right[b] for _, b in pairs) as two row-aligned arrays."""
    if not pairs:
        return np.zeros((0, 1)), np.zeros((0, 1))
    return np.stack([left[a] for a, _ in pairs]), np.stack([right[b] for _, b in pairs])


def _put(block: dict, rname: str, values: dict) -> None:
    for key, v in values.items():
        block.setdefault(key, {})[rname] = v


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
