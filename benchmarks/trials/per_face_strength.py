"""Trial, not kept (README "Tried, not kept: a strength per face"): fast mode with one strength s
per face, measured through `facecloak eval`'s own protocols (crops only).

For each target t, every face gets the smallest s on GRID whose ArcFace (EN) cosine to its own
original falls below t, D_s = C + s (D - C); the largest s when none does. The whole grid is
scanned (len(GRID) EN passes per face). The rows are added to eval's method table as
``auto_t{t}`` beside ``facecloak_fast`` (one s = 1 for every face).

Run (the committed figures, v0.4 weights, 12 min on one thread)::

    python benchmarks/trials/per_face_strength.py --targets 0.4,0.45,0.5 \\
        --weights v04.safetensors --out benchmarks/results/trial-per-face-strength

(``git show f12014d~1:weights/hiding_net.safetensors > v04.safetensors`` gives the v0.4 file.)
"""
from __future__ import annotations

import argparse
import random

import torch

GRID = tuple(0.25 + 0.125 * i for i in range(11))


def per_face(target: float):
    def run(x: torch.Tensor, keys: list[str], ctx) -> torch.Tensor:
        from facecloak.cloak import scale_residual

        ck = ctx.cloaker
        ck.cfg.mode = "fast"
        rngs = [random.Random(f"{ctx.cfg.seed}:{k}") for k in keys]  # as eval's facecloak rows
        fake, _ = ck.identities_for(x, rngs, list(range(len(keys))))
        d = ck.protect_aligned(x, fake)
        with torch.no_grad():
            f_c = ck.en(x)
            outs = torch.stack([scale_residual(x, d, s) for s in GRID], 1)  # (B, len(GRID), 3, H, W)
            cos = torch.stack([(ck.en(outs[:, j]) * f_c).sum(1) for j in range(len(GRID))], 1)
        below = cos < target
        idx = torch.where(below.any(1), below.float().argmax(1), torch.full((len(x),), len(GRID) - 1))  # first s below t, else the last
        return outs[torch.arange(len(x)), idx]

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="0.4,0.45,0.5")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from crop_rows import eval_crops_with_rows

    targets = [float(t) for t in args.targets.split(",")]
    eval_crops_with_rows({f"auto_t{t:g}": per_face(t) for t in targets}, args.out, args.weights)


if __name__ == "__main__":
    main()
