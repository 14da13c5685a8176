"""Quality vs black-box protection of fast mode over the strength sweep, one curve per weights version.

Re-run (16-35 min per eval on 2 shared CPU cores; the v0.1 report is committed, so only
the newest side needs re-running when weights/hiding_net.safetensors changes)::

    # the shipped weights and bank (whatever weights/ holds now: v1.0, whose fast_scale is 1, so s
    # is the raw factor as for the older files; for a file with another fast_scale give its tensors
    # without that field as --weights)
    nice facecloak eval --benchmark orl --no-e2e --methods facecloak_fast --sweep --sweep-strengths 0.5,0.75,0.9,1.1,1.25,1.5 \\
        --out /tmp/sweep/v10
    python benchmarks/plot_sweep.py v0.1=benchmarks/results/sweep-v01/report.json \\
        v0.2=benchmarks/results/sweep-v02/report.json \\
        "v0.1 + bank v0.2=benchmarks/results/sweep-v01-bank-v02/report.json" \\
        v0.3=benchmarks/results/sweep-v03/report.json v0.4=benchmarks/results/sweep-v04/report.json \\
        v0.5=benchmarks/results/sweep-v05/report.json v0.6=benchmarks/results/sweep-v06/report.json \\
        v0.7=benchmarks/results/sweep-v07/report.json "v0.7 grey=benchmarks/results/sweep-v07-grey/report.json" \\
        v0.8=benchmarks/results/sweep-v08/report.json v0.9=benchmarks/results/sweep-v09/report.json \\
        v1.0=/tmp/sweep/v10/report.json \\
        --out benchmarks/results/sweep_v01_to_v10 --save-reports

    # v0.1 side, only if it must be redone: v0.1's own weights and its own (DCGAN) bank, and the
    # control with v0.2's bank (commit 351d124's weights/fake_bank.safetensors)
    git show 303d9db:weights/hiding_net.safetensors > /tmp/sweep/hn_v01.safetensors
    git show 303d9db:weights/fake_bank.safetensors > /tmp/sweep/bank_v01.safetensors
    nice facecloak eval --benchmark orl --no-e2e --methods facecloak_fast --sweep \\
        --weights /tmp/sweep/hn_v01.safetensors --bank /tmp/sweep/bank_v01.safetensors --out /tmp/sweep/v01
    git show 351d124:weights/fake_bank.safetensors > /tmp/sweep/bank_v02.safetensors
    nice facecloak eval --benchmark orl --no-e2e --methods facecloak_fast --sweep \\
        --weights /tmp/sweep/hn_v01.safetensors --bank /tmp/sweep/bank_v02.safetensors --out /tmp/sweep/v01_bank02

A report measured with the same network as an earlier one (same sha256) is drawn dashed.
Arguments are LABEL=REPORT pairs (``report.json`` of ``facecloak eval --sweep``). The sweep
scales the network's residual after the fact, D_s = C + s (D - C), s in {0.5, 0.75, 1, 1.25,
1.5} (s = 1 is ``facecloak_fast``); for each s the plot takes quality (LPIPS-alex, PSNR; mean
over the de-identified faces) and each black box's ASR at its FAR = 1e-3 threshold
(``methods.<m>.asr_far.<recognizer>``, the figure the README gives first). The dotted line in
each panel is the same ASR for the unmodified faces (``original``): the recognizer's own
false rejections, the floor every method starts from.

Writes OUT.png and OUT.json (the plotted numbers, plus each report's weights: path, sha256,
model version). ``--save-reports`` copies each report to
``benchmarks/results/sweep-<folder_name(label)>/report.json``; a report from before eval
recorded its weights gets the hashes of the files its config names, marked as taken here.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLACK_BOXES = {"facenet_casia": "FaceNet", "sface": "SFace", "dlib_resnet": "dlib"}
STRENGTHS = (0.5, 0.75, 1.0, 1.25, 1.5)
TARGETS = {"asr": 0.90, "lpips": 0.05, "psnr": 32.0}  # issue 8's figures for fast mode at s = 1


def method_for(s: float) -> str:
    """Report row of strength s: ``facecloak_fast`` at s = 1, else ``facecloak_s{s:g}``."""
    return "facecloak_fast" if s == 1.0 else f"facecloak_s{s:g}"


def folder_name(label: str) -> str:
    """``v0.1`` -> ``v01``, ``v0.1 + bank v0.2`` -> ``v01-bank-v02``: dots dropped, other runs of
    characters outside [A-Za-z0-9_-] become one dash."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", label.replace(".", "")).strip("-")


def sweep_points(report: dict) -> list[dict]:
    """One point per strength present in ``report``: s, mean LPIPS-alex / PSNR / SSIM, and
    ``asr_far`` per black box (share of genuine pairs rejected at the FAR 1e-3 threshold)."""
    points = []
    for s in STRENGTHS:
        m = report["methods"].get(method_for(s))
        if m is None:
            continue
        q = m["quality"]
        points.append({"s": s, "lpips": q["lpips"]["mean"], "psnr": q["psnr"]["mean"], "ssim": q["ssim"]["mean"],
                       "asr_far": {r: m["asr_far"][r] for r in BLACK_BOXES if r in m["asr_far"]}})
    if not points:
        raise ValueError("no facecloak_fast / facecloak_s* rows: run `facecloak eval --methods facecloak_fast --sweep`")
    return points


def provenance(report: dict) -> dict:
    """The weights a report measured: its own ``weights`` block, or (reports from before that
    block existed) the files its config names, hashed now and marked so."""
    if "weights" in report:
        return report["weights"]
    from facecloak.zoo.registry import sha256_file

    out = {}
    for key, name in (("weights", "hiding_net"), ("bank", "bank")):
        path = report["config"].get(key)
        if path and Path(path).is_file():
            out[name] = {"path": path, "sha256": sha256_file(Path(path)), "hashed": "by plot_sweep.py, not by the eval run"}
        else:
            out[name] = {"path": path, "sha256": None, "note": "shipped file at eval time; not recorded by this report"}
    return out


def plot(curves: dict[str, dict], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(BLACK_BOXES), figsize=(4.2 * len(BLACK_BOXES), 7.2), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"] + ["black", "darkgoldenrod", "navy", "crimson"]  # 14 curves
    for col, (rec, rname) in enumerate(BLACK_BOXES.items()):
        for row, (key, ylabel) in enumerate((("lpips", "LPIPS-alex (lower = less visible)"), ("psnr", "PSNR dB (higher = less visible)"))):
            ax = axes[row, col]
            seen: set[str] = set()
            for i, (label, c) in enumerate(curves.items()):
                pts = [p for p in c["points"] if rec in p["asr_far"]]
                xs, ys = [p["asr_far"][rec] for p in pts], [p[key] for p in pts]
                repeat = c["sha256_12"] in seen  # same network in another setting (e.g. another bank): dashed, unlabelled
                seen.add(c["sha256_12"])
                ax.plot(xs, ys, "s--" if repeat else "o-", ms=4 if repeat else 6, color=colours[i], label=f"{label} ({c['sha256_12']})")
                for p, x, y in zip(pts, xs, ys) if not repeat else ():
                    ax.annotate(f"{p['s']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colours[i])
                floor = c["original_asr_far"].get(rec)
                if floor is not None:
                    ax.axvline(floor, color=colours[i], ls=":", lw=1)
            ax.axvline(TARGETS["asr"], color="grey", ls="--", lw=0.8)
            ax.axhline(TARGETS[key], color="grey", ls="--", lw=0.8)
            ax.set_xlim(0, 1.04)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{rname}")
            if row == 1:
                ax.set_xlabel(f"ASR at FAR 1e-3 ({rname})")
            if col == 0:
                ax.set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle("fast mode, residual scaled by s (labels); dashed: issue 8 targets; dotted: unprotected faces", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def curves_from(pairs: list[str]) -> dict[str, dict]:
    curves = {}
    for arg in pairs:
        label, sep, path = arg.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"expected LABEL=REPORT, got {arg!r}")
        report = json.loads(Path(path).read_text())
        prov = provenance(report)
        sha = (prov.get("hiding_net") or {}).get("sha256")
        curves[label] = {
            "report": path,
            "weights": prov,
            "sha256_12": sha[:12] if sha else "sha unknown",
            "faces": report["data"].get("deidentified_faces"),
            "genuine_pairs": report["data"].get("genuine_pairs"),
            "original_asr_far": {r: report["methods"]["original"]["asr_far"].get(r) for r in BLACK_BOXES},
            "far_threshold": {r: report["thresholds"].get(r, {}).get("far_1e-3") for r in BLACK_BOXES},
            "timing_seconds": report.get("timing_seconds"),
            "points": sweep_points(report),
        }
    return curves


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reports", nargs="+", help="LABEL=path/to/report.json, one per weights version")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/sweep_v01_to_v10"), help="writes OUT.png and OUT.json")
    ap.add_argument("--save-reports", action="store_true", help="copy each report to benchmarks/results/sweep-<label>/report.json")
    args = ap.parse_args(argv)
    curves = curves_from(args.reports)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.save_reports:
        for label, c in curves.items():
            dest = ROOT / "benchmarks/results" / f"sweep-{folder_name(label)}" / "report.json"
            dest.parent.mkdir(parents=True, exist_ok=True)
            report = json.loads(Path(c["report"]).read_text())
            if "weights" not in report:  # an older report: keep the hashes taken now with it
                report["weights"] = c["weights"]
                dest.write_text(json.dumps(report, indent=2))
            elif Path(c["report"]).resolve() != dest.resolve():
                shutil.copyfile(c["report"], dest)
            c["report"] = str(dest.relative_to(ROOT))
    plot(curves, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps({"metric": "ASR at each recognizer's FAR 1e-3 threshold; quality means over the de-identified faces",
                                                    "curves": curves}, indent=2))
    for label, c in curves.items():
        for p in c["points"]:
            asr = "  ".join(f"{BLACK_BOXES[r]} {v:.3f}" for r, v in p["asr_far"].items())
            print(f"{label:>6} s={p['s']:<4g} LPIPS {p['lpips']:.4f}  PSNR {p['psnr']:.2f}  SSIM {p['ssim']:.3f}  ASR@FAR1e-3: {asr}")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
