"""Write ``report.md`` (the paper's Tables 6, 7 and 8 for our data) and the PNG plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np

ATTACK_LABELS = {"median_blur": "Median", "gaussian_blur": "Gaussian", "jpeg": "JPEG", "bit_depth": "Bit-depth"}
NAMES = {"arcface_mbf": "ArcFace (EN, white box)", "facenet_casia": "FaceNet", "sface": "SFace", "dlib_resnet": "dlib"}


def _f(x, pct: bool = False, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.{nd}f}"


def _recs(report) -> list[str]:
    return [r for r in [report["recognizers"]["white_box"], *report["recognizers"]["black_box"]] if r in report["original"]["threshold"]]


def _pair(a, b) -> str:
    """'ASR / same-photo ASR' cell."""
    return f"{_f(a, True)} / {_f(b, True)}"


def _thr(x, nd: int = 3) -> str:
    return "–" if x is None else _f(x, nd=nd)


KIND_SUFFIX = {"far_1e-3": "_far", "best_accuracy": "", "published": "_published"}
KIND_TITLE = {
    "far_1e-3": "FAR = 1e-3 (threshold fitted on training faces + fakes only)",
    "best_accuracy": "paper protocol (best-accuracy threshold on this benchmark's original pairs)",
    "published": "published operating points (SFace cos 0.363, dlib raw distance 0.6; none for FaceNet, ArcFace)",
}


def markdown(report: dict) -> str:
    recs = _recs(report)
    meths = report["methods"]
    d = report["data"]
    o = report["original"]
    th = report.get("thresholds", {})
    has_e2e = any("e2e" in v for v in meths.values())
    lines = [
        f"# facecloak eval: {d['benchmark']}",
        "",
        f"{d['images']} aligned faces of {d['people']} people; {d['genuine_pairs']} genuine and {d['impostor_pairs']} impostor pairs; "
        f"{d['deidentified_faces']} faces de-identified per method; {d['dropped_no_face']} images dropped (no face). Protocol: {d['protocol']}.",
        f"FAR impostor set: {d.get('impostors', '–')}. End to end: {d.get('e2e') or 'not run'}.",
        f"Device: {report['device']}. ASR, Rank-k in %. ArcFace is EN, the white box used in training; the others are black boxes "
        "that played no part in training.",
        "",
        "Cells `a / b`: **a** = ASR on genuine pairs of *different* photos (D(I1) vs I2), **b** = same-photo ASR (D(I) vs I itself). "
        "`original` is the no-change row (C scored as D). **e2e** = whole photo protected by `facecloak protect` (paste-back, JPEG q95), "
        "re-detected and re-aligned by dlib's HOG detector; **crop** = the aligned 256x256 crop straight from the method.",
        "",
        "## Recognizers and thresholds",
        "",
        "| recognizer | ROC AUC | FAR 1e-3 (cos) | best-accuracy (cos) | published | impostor pairs | originals rejected at FAR 1e-3 / best / published |",
        "|---|---|---|---|---|---|---|",
    ]
    orig = meths.get("original", {})
    for r in recs:
        t = th.get(r, {})
        pub = "–" if t.get("published") is None else (
            f"dist ≤ {t['published']} (raw; ≈ cos {t['published_cos_at_median_norm']:.3f})" if t.get("published_metric") == "euclidean_raw" else f"cos {t['published']}")
        lines.append(
            f"| {NAMES.get(r, r)} | {_f(o['auc'][r], nd=4)} | {_thr(t.get('far_1e-3'))} | {_thr(o['threshold'][r])} | {pub} | {t.get('impostor_pairs', '–')} | "
            f"{_f(orig.get('asr_far', {}).get(r), True)} / {_f(o['asr'][r], True)} / {_f(orig.get('asr_published', {}).get(r), True)} |")
    lines += ["", "Originals rejected = ASR of unprotected faces (false rejects of genuine pairs): the floor every method starts from.", ""]
    for n, kind in enumerate(("far_1e-3", "best_accuracy", "published")):
        sfx = KIND_SUFFIX[kind]
        rk = [r for r in recs if kind != "published" or th.get(r, {}).get("published") is not None]
        if not rk:
            continue
        lines += [f"## Table 6{'abc'[n]}: ASR / same-photo ASR at {KIND_TITLE[kind]} ↑", ""]
        cols = ["method", "LPIPS e2e ↓", "LPIPS crop ↓"] + [f"{NAMES.get(r, r)} {w}" for r in rk for w in (("e2e", "crop") if has_e2e else ("crop",))]
        if kind == "best_accuracy":
            cols[3:3] = ["PSNR crop ↑", "SSIM crop ↑"]
        lines += ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
        for m, v in meths.items():
            if _is_sweep(m):
                continue
            e = v.get("e2e", {})
            eq = e.get("quality", {})
            q = v["quality"]
            row = [m, _f(eq.get("lpips", {}).get("mean"), nd=4) if eq else "–", _f(q["lpips"]["mean"], nd=4)]
            if kind == "best_accuracy":
                row += [f"{_f(q['psnr']['mean'])}", _f(q["ssim"]["mean"], nd=3)]
            for r in rk:
                if has_e2e:
                    row.append(_pair(e.get(f"asr{sfx}", {}).get(r), e.get(f"asr_same{sfx}", {}).get(r)) if e else "–")
                row.append(_pair(v.get(f"asr{sfx}", {}).get(r), v.get(f"asr_same{sfx}", {}).get(r)))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if has_e2e:
        lines += ["## End-to-end quality and detection", "", "| method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | HOG found the face | s / photo |", "|---|---|---|---|---|---|"]
        for m, v in meths.items():
            e = v.get("e2e")
            if not e or "quality" not in e:
                continue
            q = e["quality"]
            lines.append(f"| {m} | {_f(q['psnr']['mean'])} | {_f(q['ssim']['mean'], nd=3)} | {_f(q['lpips']['mean'], nd=4)} | "
                         f"{_f(e.get('detected'), True)} | {_f(e.get('seconds_per_photo'), nd=3)} |")
        lines += ["", "Quality of the face region as the user gets it: original and protected photo warped with the same landmarks "
                  "(JPEG and paste-back included).", ""]
    lines += ["## Crop quality and time", "", "| method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | s / face |", "|---|---|---|---|---|"]
    for m, v in meths.items():
        q = v["quality"]
        lines.append(f"| {m} | {_f(q['psnr']['mean'])} ({_f(q['psnr']['median'])}) | {_f(q['ssim']['mean'], nd=3)} | {_f(q['lpips']['mean'], nd=4)} | {_f(v['seconds_per_face'], nd=3)} |")
    cfg = report.get("config", {})
    strong_steps = cfg.get("strong_steps") or "the preset's own"
    lines += ["", "Quality: mean (median in brackets for PSNR) over faces, on the aligned 256x256 crops. "
              f"Strength {cfg.get('strength', 'medium')} (fast mode's scale, strong mode's preset). "
              f"Budgets: strong mode {strong_steps} steps; LGC {cfg.get('lgc_steps')}, TIP-IM {cfg.get('tip_im_steps')}, "
              f"Fawkes-style {cfg.get('fawkes_steps')} steps (the defaults of our implementations in facecloak/eval/baselines.py, "
              "which are not the authors' code).", "", "## Table 7: Rank-1 / Rank-5 (1:N) ↓", ""]
    lines.append("| method | " + " | ".join(f"{NAMES.get(r, r)} R1 | R5" for r in recs) + " |")
    lines.append("|---" * (1 + 2 * len(recs)) + "|")
    for m, v in meths.items():
        lines.append(f"| {m} | " + " | ".join(f"{_f(v['rank1'].get(r), True)} | {_f(v['rank5'].get(r), True)}" for r in recs) + " |")
    lines += ["", "## Table 8: ASR after image-processing attacks on D ↑", "",
              "Cells `a (b)`: **a** at FAR 1e-3, **b** at the paper's best-accuracy threshold. The `original` row is the attack alone "
              "(no de-identification): a method's robust protection is its ASR *above* that row.", ""]
    for r in recs:
        lines += [f"### {NAMES.get(r, r)}", "", "| method | None | " + " | ".join(ATTACK_LABELS.values()) + " |", "|---" * 6 + "|"]
        for m, v in meths.items():
            if "robustness" not in v or not v["robustness"]:
                continue
            rob, robf = v["robustness"], v.get("robustness_far", {})
            cells = [f"{_f(v.get('asr_far', {}).get(r), True)} ({_f(v['asr'].get(r), True)})"]
            cells += [f"{_f(robf.get(a, {}).get(r), True)} ({_f(rob[a].get(r), True)})" for a in ATTACK_LABELS]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Attacks (paper 4.9): median blur k=5; Gaussian blur k=5, σ=2; JPEG quality 10; bit depth 3.", ""]
    sw = report["software"]
    lines.append("Software: " + ", ".join(f"{k} {v}" for k, v in sw.items()))
    return "\n".join(lines) + "\n"


def write_markdown(report: dict, path: Path) -> None:
    path.write_text(markdown(report))


def write_plots(report: dict, originals: dict, deid: dict, grid_keys: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = _recs(report)
    for r in recs:
        fig, ax = plt.subplots(figsize=(5, 4))
        curve = report["original"]["cmc"].get(r)
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, "k--", label="original")
        for m, v in report["methods"].items():
            c = v["cmc"].get(r)
            if c and not _is_sweep(m) and m != "original":
                ax.plot(range(1, len(c) + 1), c, marker=".", label=m)
        ax.set(xlabel="rank", ylabel="identification rate", title=f"CMC: {NAMES.get(r, r)}", ylim=(0, 1.02))
        if ax.get_lines():
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"cmc_{r}.png", dpi=110)
        plt.close(fig)
    # Quality vs mean black-box ASR (paper Fig. 14).
    black = [r for r in recs if r != report["recognizers"]["white_box"]]
    fig, ax = plt.subplots(figsize=(5, 4))
    for m, v in report["methods"].items():
        asr = np.nanmean([v.get("asr_far", v["asr"]).get(r, np.nan) for r in black]) if black else np.nan
        ax.scatter(v["quality"]["lpips"]["mean"], asr)
        ax.annotate(m, (v["quality"]["lpips"]["mean"], asr), fontsize=6)
    ax.set(xlabel="LPIPS-alex (lower = closer to the original)", ylabel="mean black-box ASR (FAR 1e-3)", title="quality vs protection")
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=110)
    plt.close(fig)
    _grid(originals, deid, grid_keys, out / "grid.png")


def _is_sweep(method: str) -> bool:
    """Sweep points (lgc_eps3, facecloak_s0.5) are plotted in the trade-off only."""
    import re

    return bool(re.fullmatch(r"lgc_eps\d+|facecloak_s[\d.]+", method))


def _grid(originals: dict, deid: dict, keys: list[str], path: Path) -> None:
    """Rows: methods; per face three tiles C | D | 10x|D - C| (paper Figs. 16-17), at 128 px."""
    import cv2
    from PIL import Image, ImageDraw

    t = 128
    methods = [m for m in deid if not _is_sweep(m) and m != "original"]
    canvas = np.full((t * len(methods), 110 + 3 * t * len(keys), 3), 255, np.uint8)
    for i, m in enumerate(methods):
        for j, k in enumerate(keys):
            c, d = originals[k], deid[m][k]
            diff = np.clip(np.abs(d.astype(np.int16) - c.astype(np.int16)) * 10, 0, 255).astype(np.uint8)
            for q, tile in enumerate((c, d, diff)):
                x = 110 + (3 * j + q) * t
                canvas[i * t : (i + 1) * t, x : x + t] = cv2.resize(tile, (t, t), interpolation=cv2.INTER_AREA)
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for i, m in enumerate(methods):
        draw.text((4, i * t + t // 2), m, fill=(0, 0, 0))
    im.quantize(256).save(path, optimize=True)  # a palette keeps the grid PNG small
