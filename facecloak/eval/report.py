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


def markdown(report: dict) -> str:
    recs = _recs(report)
    meths = report["methods"]
    d = report["data"]
    lines = [
        f"# facecloak eval: {d['benchmark']}",
        "",
        f"{d['images']} aligned faces of {d['people']} people; {d['genuine_pairs']} genuine and {d['impostor_pairs']} impostor pairs; "
        f"{d['deidentified_faces']} faces de-identified per method; {d['dropped_no_face']} images dropped (no face). Protocol: {d['protocol']}.",
        f"Device: {report['device']}. ASR, Rank-k in %. ArcFace is EN, the white box used in training; the others are black boxes.",
        "",
        "## Recognizers on the original faces",
        "",
        "| recognizer | ROC AUC | best-accuracy threshold (cos) | accuracy | Rank-1 | Rank-5 |",
        "|---|---|---|---|---|---|",
    ]
    o = report["original"]
    for r in recs:
        lines.append(f"| {NAMES.get(r, r)} | {_f(o['auc'][r], nd=4)} | {_f(o['threshold'][r], nd=3)} | {_f(o['accuracy'][r], True)} | {_f(o['rank1'].get(r), True)} | {_f(o['rank5'].get(r), True)} |")
    lines += ["", "## Table 6: image quality and ASR (1:1)", ""]
    lines.append("| method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | " + " | ".join(f"ASR {NAMES.get(r, r)} ↑" for r in recs) + " | s / face |")
    lines.append("|---" * (5 + len(recs)) + "|")
    lines.append("| Original (no de-identification) | – | – | – | " + " | ".join(_f(o["asr"][r], True) for r in recs) + " | – |")
    for m, v in meths.items():
        q = v["quality"]
        lines.append(
            f"| {m} | {_f(q['psnr']['mean'])} ({_f(q['psnr']['median'])}) | {_f(q['ssim']['mean'], nd=3)} | {_f(q['lpips']['mean'], nd=4)} | "
            + " | ".join(_f(v["asr"].get(r), True) for r in recs) + f" | {_f(v['seconds_per_face'], nd=3)} |"
        )
    lines += ["", "Quality: mean (median in brackets for PSNR) over faces, on the aligned 256x256 crops.", "", "## Table 7: Rank-1 / Rank-5 (1:N) ↓", ""]
    lines.append("| method | " + " | ".join(f"{NAMES.get(r, r)} R1 | R5" for r in recs) + " |")
    lines.append("|---" * (1 + 2 * len(recs)) + "|")
    lines.append("| Original | " + " | ".join(f"{_f(o['rank1'].get(r), True)} | {_f(o['rank5'].get(r), True)}" for r in recs) + " |")
    for m, v in meths.items():
        lines.append(f"| {m} | " + " | ".join(f"{_f(v['rank1'].get(r), True)} | {_f(v['rank5'].get(r), True)}" for r in recs) + " |")
    lines += ["", "## Table 8: ASR after image-processing attacks on D ↑", ""]
    for r in recs:
        lines += [f"### {NAMES.get(r, r)}", "", "| method | Original | None | " + " | ".join(ATTACK_LABELS.values()) + " |", "|---" * 7 + "|"]
        for m, v in meths.items():
            rob = v["robustness"]
            lines.append(f"| {m} | {_f(o['asr'][r], True)} | {_f(v['asr'].get(r), True)} | " + " | ".join(_f(rob[a].get(r), True) for a in ATTACK_LABELS) + " |")
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
            if c and not _is_sweep(m):
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
        asr = np.nanmean([v["asr"].get(r, np.nan) for r in black]) if black else np.nan
        ax.scatter(v["quality"]["lpips"]["mean"], asr)
        ax.annotate(m, (v["quality"]["lpips"]["mean"], asr), fontsize=6)
    ax.set(xlabel="LPIPS-alex (lower = closer to the original)", ylabel="mean black-box ASR", title="quality vs protection")
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
    methods = [m for m in deid if not _is_sweep(m)]
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
