"""Strong mode's trade-off per ``--strength`` preset: LPIPS-alex against same-photo ASR (issue 9).

Run: python benchmarks/strong_tradeoff.py [--limit 16] [--out benchmarks/results/strong_tradeoff]

For fast mode and each preset, the ORL evaluation probes (the faces ``facecloak eval --benchmark
orl`` de-identifies, first ``--limit`` of them) are protected as the eval does (aligned crops,
one reproducible fake identity per face, saved as 8-bit), then:

* quality: PSNR, SSIM and LPIPS-alex against the original crop (the eval's own functions);
* same-photo ASR per black box: the share of faces whose cosine to their *own original* is below
  the recognizer's threshold, at the best-accuracy and at the FAR-1e-3 threshold read from a
  committed eval report (``--report``), so the figures match that report's protocol;
* (ORL faces) paper-protocol ASR per black box: the share of the benchmark's genuine pairs
  (protected probe, *another* photo of the same person) below the best-accuracy threshold, the
  eval's crop figure for these probes (all 40: the same pairs as the report);
* CPU seconds per face for the de-identification alone (models already loaded).

Settings that are not presets are measured with ``--variant NAME=JSON`` (repeatable): the
fields of ``facecloak.strong.StrongConfig`` to change, on the preset named by an optional
``"base"`` (default ``medium``); e.g. ``--strengths "" --variant 'g8={"flow_grid": 8}'``.
``--faces train-pool`` takes a seeded sample of the offline *training* crops instead of the ORL
probes (faces the presets were not chosen on); ``--attack bits3`` scores the protected faces after
a 3-bit depth reduction, as the eval's attack does. ``--e2e`` (ORL faces) also protects the probes'
*photos* as the eval's end-to-end protocol does (``facecloak.eval.e2e.run_e2e``: paste-back, JPEG
q95, the attacker's own dlib HOG re-alignment) and adds ``e2e_asr_same`` / ``e2e_asr_paper`` at the
same best-accuracy thresholds: a crop figure alone once chose a setting that protected less in
real photos (README, "SSIM ≥ 0.95").

Writes ``<out>.json`` and ``<out>.png`` (LPIPS-alex on x, same-photo ASR on y, one panel per
black box). FaceNet is a surrogate of medium and high, so only SFace and dlib are held out.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: no spinning threads on a shared CPU
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BLACK_BOXES = ("facenet_casia", "sface", "dlib_resnet")
PRESET_NAMES = ("low", "medium", "high")


def same_photo_asr(cos: np.ndarray, threshold: float) -> float:
    """Share of faces judged another person than their own original: mean(cos < threshold)."""
    return float(np.mean(cos < threshold))


def register_variant(spec: str) -> str:
    """Add ``NAME={json}`` to ``facecloak.strong.PRESETS`` as the ``base`` preset with those fields
    changed (lists become tuples, as StrongConfig's fields are); return NAME."""
    from dataclasses import replace

    from facecloak import strong as S

    name, _, body = spec.partition("=")
    fields = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v for k, v in json.loads(body).items()}
    S.PRESETS[name] = replace(S.PRESETS[fields.pop("base", "medium")], **fields)
    return name


def paper_asr(f_probe: np.ndarray, f_gallery: np.ndarray, pairs: list[tuple[int, int]], threshold: float) -> float:
    """Share of genuine pairs (probe i, gallery j) judged different people: mean(f_i · g_j < t)."""
    return float(np.mean([f_probe[i] @ f_gallery[j] < threshold for i, j in pairs]))


def orl_probes(limit: int):
    """The ORL benchmark and its first ``limit`` evaluation probes (the faces ``facecloak eval``
    de-identifies), with their original crops: (bench, keys, {key: HxWx3 uint8})."""
    from facecloak.eval import benchmark as B
    from facecloak.train.data import read_rgb

    bench = B.orl_benchmark(0, "cpu")
    keys = sorted({a for a, _, s in bench.pairs if s} | {k for s in bench.id_sets for k in s})[:limit]
    return bench, keys, {k: read_rgb(bench.crops[k]) for k in keys}


def bit_depth_3(d: np.ndarray) -> np.ndarray:
    """8-bit images reduced to 3 bits per channel and back: round(x/255 · 7) / 7 · 255."""
    return (np.round(d / 255 * 7) / 7 * 255).round().astype(np.uint8)


def protect(ck, x: torch.Tensor, keys: list[str], mode: str, strength: str, seed: int = 0) -> tuple[np.ndarray, float]:
    """8-bit de-identified crops for ``x`` in ``mode``/``strength``, and the CPU seconds per face."""
    ck.cfg.mode, ck.cfg.strength, ck.cfg.strong_steps = mode, strength, None
    t = time.process_time()
    outs = []
    for i in range(0, len(keys), ck.cfg.batch_size):
        chunk = slice(i, i + ck.cfg.batch_size)
        rngs = [random.Random(f"{seed}:{k}") for k in keys[chunk]]  # as `facecloak eval` does
        fake, _ = ck.identities_for(x[chunk], rngs, list(range(len(rngs))))
        outs.append(ck.protect_aligned(x[chunk], fake))
    d = (torch.cat(outs).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return d, (time.process_time() - t) / len(keys)


def run_name(mode: str, strength: str) -> str:
    """A row's name: its strength (preset or variant) in strong mode, else the mode ("fast")."""
    return strength if mode == "strong" else mode


def end_to_end(ck, bench, keys: list[str], originals: dict, runs: list[tuple[str, str]], recs: dict, thresholds: dict) -> dict:
    """Same-photo and paper-protocol ASR of the probes' photos protected as ``facecloak protect
    --mode MODE --strength STRENGTH`` writes them, for each (mode, strength) of ``runs`` (keyed by
    ``run_name``), and re-aligned by the attacker (the eval's e2e protocol: the attacker's crop of
    the protected photo against its crops of the originals, which are found once for all runs)."""
    from facecloak.cloak import CloakConfig, Cloaker
    from facecloak.eval.e2e import run_e2e
    from facecloak.eval.runner import to_batch

    probes = [k for k in keys if k in bench.photos]
    gallery = sorted({b for a, b, s in bench.pairs if s and a in probes} & set(bench.photos))
    by_name = {run_name(mode, strength): mode for mode, strength in runs}

    def make_cloaker(name: str):
        mode = by_name[name]
        cfg = CloakConfig(mode=mode, strength=name if mode == "strong" else "medium", seed=0)
        return Cloaker(ck.hn, ck.en, ck.bank, ck.detector, cfg, device=ck.device)

    res = run_e2e(bench.photos, probes, gallery, originals, list(by_name), make_cloaker, ck.detector)
    out = {}
    with torch.no_grad():
        f_gal = {n: dict(zip(sorted(res.gallery), torch.cat([m(to_batch([res.gallery[k] for k in sorted(res.gallery)[i : i + 16]]))
                                                              for i in range(0, len(res.gallery), 16)]).numpy())) for n, m in recs.items()}
        for name in by_name:
            views = res.views[f"facecloak_{name}"]
            live = sorted(views)
            genuine = [(a, b) for a, b, same in bench.pairs if same and a in views and b in res.gallery]
            row = out[name] = {"e2e_probes": len(live), "e2e_asr_same": {}, "e2e_asr_paper": {}, "e2e_asr_same_place": {}}
            for n, m in recs.items():
                f_view = dict(zip(live, m(to_batch([views[k] for k in live])).numpy()))
                t = thresholds[n]["best_accuracy"]
                row["e2e_asr_same"][n] = same_photo_asr(np.array([f_view[k] @ f_gal[n][k] for k in live]), t)
                # the protected photo cut where the attacker found the face in the *original* (its
                # landmarks not re-detected on the protected face): what re-alignment alone changes.
                # Its reference, the original cut there, is the attacker's crop of the original.
                f_place = m(to_batch([res.same_place[f"facecloak_{name}"][k] for k in live])).numpy()
                row["e2e_asr_same_place"][n] = same_photo_asr(np.array([f @ f_gal[n][k] for f, k in zip(f_place, live)]), t)
                row["e2e_asr_paper"][n] = float(np.mean([f_view[a] @ f_gal[n][b] < t for a, b in genuine]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=16, help="first N ORL evaluation probes (40 in all)")
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks/results/eval-orl-strong/report.json", help="eval report whose thresholds are used")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/strong_tradeoff")
    ap.add_argument("--strengths", default="low,medium,high", help="presets to run (\"\" for none)")
    ap.add_argument("--variant", action="append", default=[], help='NAME={"field": value, "base": "medium"}: a StrongConfig variant to run too')
    ap.add_argument("--faces", choices=("orl", "train-pool"), default="orl")
    ap.add_argument("--attack", choices=("none", "bits3"), default="none")
    ap.add_argument("--weights", default=None, help="hiding-network weights (default: the shipped ones)")
    ap.add_argument("--seed", type=int, default=0, help="draw of the fake identities (0: as `facecloak eval` does)")
    ap.add_argument("--e2e", action="store_true", help="also the end-to-end protocol on the probes' photos (ORL faces; twice the time)")
    args = ap.parse_args()
    names = [n for n in args.strengths.split(",") if n] + [register_variant(v) for v in args.variant]

    from facecloak.cloak import CloakConfig
    from facecloak.eval.runner import _quality, to_batch
    from facecloak.pretrained import build_cloaker, load_recognizer
    from facecloak.train.data import read_rgb

    thresholds = json.loads(args.report.read_text())["thresholds"]
    if args.faces == "orl":
        bench, keys, originals = orl_probes(args.limit)
        genuine = [(a, b) for a, b, same in bench.pairs if same and a in originals]
        gallery = sorted({b for _, b in genuine})
        pairs = [(keys.index(a), gallery.index(b)) for a, b in genuine]
        g = to_batch([read_rgb(bench.crops[b]) for b in gallery])
    else:
        from facecloak.data.crops import offline_crops

        keys = [str(p) for p in random.Random(7).sample(sorted(offline_crops("train").glob("*.png")), args.limit)]
        originals = {k: read_rgb(Path(k)) for k in keys}
        pairs, g = [], None
    x = to_batch([originals[k] for k in keys])
    ck = build_cloaker(weights=args.weights, device="cpu", config=CloakConfig(seed=0))
    recs = {n: load_recognizer(n, "cpu") for n in BLACK_BOXES}
    with torch.no_grad():
        f_orig = {n: m(x) for n, m in recs.items()}
        f_gal = {n: torch.cat([m(g[i : i + 16]) for i in range(0, len(g), 16)]).numpy() for n, m in recs.items()} if pairs else {}

    rows = []
    for mode, strength in [("fast", "-")] + [("strong", s) for s in names]:
        d, cpu = protect(ck, x, keys, mode, strength if mode == "strong" else "medium", args.seed)
        if args.attack == "bits3":
            d = bit_depth_3(d)
        q = _quality(originals, dict(zip(keys, d)))
        row = {"mode": mode, "strength": strength, "cpu_seconds_per_face": round(cpu, 2),
               "lpips_alex": q["lpips"]["mean"], "psnr": q["psnr"]["mean"], "ssim": q["ssim"]["mean"], "asr_same": {}, "asr_same_far": {}, "asr_paper": {}}
        with torch.no_grad():
            dx = to_batch(list(d))
            for n, m in recs.items():
                f = m(dx)
                cos = (f * f_orig[n]).sum(1).numpy()
                row["asr_same"][n] = same_photo_asr(cos, thresholds[n]["best_accuracy"])
                if pairs:
                    row["asr_paper"][n] = paper_asr(f.numpy(), f_gal[n], pairs, thresholds[n]["best_accuracy"])
                row["asr_same_far"][n] = same_photo_asr(cos, thresholds[n]["far_1e-3"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.e2e and args.faces == "orl":
        e2e = end_to_end(ck, bench, keys, originals, [(r["mode"], r["strength"]) for r in rows], recs, thresholds)
        for r in rows:
            r.update(e2e[run_name(r["mode"], r["strength"])])
            print(json.dumps({"strength": r["strength"], **{k: v for k, v in r.items() if k.startswith("e2e")}}), flush=True)

    meta = {"faces": len(keys), "genuine_pairs": len(pairs), "benchmark": ("orl (first %d evaluation probes)" if args.faces == "orl" else "offline training pool (%d faces, seeded sample)") % len(keys), "attack": args.attack, "thresholds_from": str(args.report.resolve().relative_to(ROOT)),
            "note": "same-photo ASR: each protected face against its own original; FaceNet is a surrogate of medium/high, SFace and dlib are held out"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    plot(rows, args.out.with_suffix(".png"), meta)


def plot(rows: list[dict], path: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(BLACK_BOXES), figsize=(4 * len(BLACK_BOXES), 3.6), sharey=True)
    for ax, n in zip(axes, BLACK_BOXES):
        for key, style in (("asr_same", "o-"), ("asr_same_far", "s--")):
            strong = [r for r in rows if r["mode"] == "strong" and r["strength"] in PRESET_NAMES]  # the presets as a curve
            line, = ax.plot([r["lpips_alex"] for r in strong], [r[key][n] for r in strong], style, label=f"strong, {'best accuracy' if key == 'asr_same' else 'FAR 1e-3'}")
            for r in strong:
                ax.annotate(r["strength"], (r["lpips_alex"], r[key][n]), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if key == "asr_same":  # variants (trials) as loose points, best-accuracy only
                for r in (r for r in rows if r["mode"] == "strong" and r["strength"] not in PRESET_NAMES):
                    ax.plot([r["lpips_alex"]], [r[key][n]], "o", mfc="none", color=line.get_color(), ms=5)
                    ax.annotate(r["strength"], (r["lpips_alex"], r[key][n]), textcoords="offset points", xytext=(3, -9), fontsize=6, color="dimgrey")
            fast = next(r for r in rows if r["mode"] == "fast")
            ax.plot([fast["lpips_alex"]], [fast[key][n]], "x" if key == "asr_same" else "+", color="grey", ms=8, label=f"fast, {'best accuracy' if key == 'asr_same' else 'FAR 1e-3'}")
        if any("e2e_asr_same" in r for r in rows):  # --e2e: what the pasted-back photo gives, at the crop's LPIPS-alex
            strong = [r for r in rows if r["mode"] == "strong" and r["strength"] in PRESET_NAMES and "e2e_asr_same" in r]
            ax.plot([r["lpips_alex"] for r in strong], [r["e2e_asr_same"][n] for r in strong], "^:", label="strong, end to end, best accuracy")
            fast = next((r for r in rows if r["mode"] == "fast" and "e2e_asr_same" in r), None)
            if fast:
                ax.plot([fast["lpips_alex"]], [fast["e2e_asr_same"][n]], "v", color="grey", ms=6, label="fast, end to end, best accuracy")
        ax.axvline(0.05, color="red", lw=0.8, ls=":")
        ax.axhline(0.90, color="red", lw=0.8, ls=":")
        ax.set_title(n + (" (surrogate from medium)" if n == "facenet_casia" else " (held out)"), fontsize=9)
        ax.set_xlabel("LPIPS-alex (lower = closer to the original)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("same-photo ASR")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"strong-mode presets, {meta['faces']} ORL faces; red: issue 9's targets", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
