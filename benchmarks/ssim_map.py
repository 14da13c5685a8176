"""Where the protected faces lose SSIM: the per-position SSIM map, averaged over the ORL probes.

Run: python benchmarks/ssim_map.py [--limit 40] [--strengths medium,high] [--variant NAME=JSON]
        [--out benchmarks/results/ssim_map]

The probes are protected as ``benchmarks/strong_tradeoff.py`` (and ``facecloak eval``) protect
them: fast mode, then each strong-mode preset or ``--variant``. For each, the SSIM map of every
protected crop against its original (``facecloak.eval.metrics.ssim_map``, the eval's own SSIM) is
averaged over the faces, and split into the face interior (an ellipse around eyes, nose and mouth
of the canonical 256 template: centre (128, 150), semi-axes 70 x 90 px, a third of the crop) and
the rest (hair, ears, background). The whole-map mean is the eval's crop SSIM.

Writes ``<out>.png`` (one dark-is-lost map per method, the ellipse drawn on it) and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CENTRE, AXES = (128.0, 150.0), (70.0, 90.0)
BORDER = 5  # the SSIM window's radius: map position (i, j) is pixel (i + 5, j + 5)


def interior_mask(size: int = 256, border: int = BORDER) -> np.ndarray:
    """Boolean mask over the SSIM map's positions (pixel = position + ``border``) inside the ellipse
    ((x − 128) / 70)² + ((y − 150) / 90)² < 1."""
    yy, xx = np.mgrid[border : size - border, border : size - border]
    return ((xx - CENTRE[0]) / AXES[0]) ** 2 + ((yy - CENTRE[1]) / AXES[1]) ** 2 < 1


def split_means(m: np.ndarray, mask: np.ndarray) -> dict:
    """Mean of map ``m`` overall, inside and outside ``mask``."""
    return {"ssim": float(m.mean()), "interior": float(m[mask].mean()), "rest": float(m[~mask].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--strengths", default="medium,high")
    ap.add_argument("--variant", action="append", default=[], help="as in strong_tradeoff.py")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ssim_map")
    args = ap.parse_args()

    spec = importlib.util.spec_from_file_location("strong_tradeoff", ROOT / "benchmarks/strong_tradeoff.py")
    T = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(T)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    from facecloak.cloak import CloakConfig
    from facecloak.eval.metrics import ssim_map
    from facecloak.eval.runner import to_batch
    from facecloak.pretrained import build_cloaker

    names = [n for n in args.strengths.split(",") if n] + [T.register_variant(v) for v in args.variant]
    _, keys, originals = T.orl_probes(args.limit)
    orig = [originals[k] for k in keys]
    x = to_batch(orig)
    ck = build_cloaker(device="cpu", config=CloakConfig(seed=0))
    mask = interior_mask()
    maps, rows = {}, []
    for mode, strength in [("fast", "medium")] + [("strong", s) for s in names]:
        d, _ = T.protect(ck, x, keys, mode, strength)
        label = "fast" if mode == "fast" else f"strong {strength}"
        maps[label] = np.mean([ssim_map(o, p) for o, p in zip(orig, d)], axis=0)
        rows.append({"method": label, **split_means(maps[label], mask)})
        print(json.dumps(rows[-1]), flush=True)

    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.6))
    for ax, (label, m), row in zip(np.atleast_1d(axes), maps.items(), rows):
        ax.imshow(m, cmap="gray", vmin=0.5, vmax=1.0)
        ax.add_patch(Ellipse((CENTRE[0] - BORDER, CENTRE[1] - BORDER), 2 * AXES[0], 2 * AXES[1], fill=False, color="tab:red", lw=1))
        ax.set_title(f"{label}\nSSIM {row['ssim']:.3f}: face {row['interior']:.3f}, rest {row['rest']:.3f}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"mean SSIM map over {len(keys)} ORL probes (dark = lost; grey scale 0.5-1)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    meta = {"command": "python benchmarks/ssim_map.py " + " ".join(f"--{k} {v}" for k, v in [("limit", args.limit), ("strengths", args.strengths)]),
            "variants": args.variant, "faces": len(keys), "interior": f"ellipse centre {CENTRE}, semi-axes {AXES} px; {mask.mean():.3f} of the map"}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
