"""Trial, not kept (model card, "Tried after v0.7"): reshape fast mode's change at test time, with
no retraining, and measure it through `facecloak eval`'s own protocols (crops only).

Variants, each a row of eval's method table beside ``facecloak_fast`` (D = warp(C, F) + R):

* ``split_a{a}_b{b}``: the warp and the residual scaled apart, D = warp(C, a F) + b R
  (``facecloak_fast`` is a = b = 1 through the same network; ``--sweep``'s s scales D - C);
* ``texture_t{t}``: more change where the face has texture, D = C + m (D - C) with
  m = w / mean(w), w = σ / (σ + t), σ the local standard deviation of C's luma (Gaussian window,
  σ_w = 1.5 px, as SSIM's), so the mean scale stays 1;
* ``flat_t{t}``: the opposite, w = t / (σ + t).

Run (the committed figures, v0.7 weights, about 6 min on one thread)::

    python benchmarks/trials/fast_reshape.py --variants split_a0_b1,split_a0.5_b1,split_a1_b0.6,texture_t0.02,flat_t0.02 \\
        --out benchmarks/results/trial-fast-reshape
"""
from __future__ import annotations

import argparse
import random

import torch


def local_std(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """σ(x) = sqrt(G * y² - (G * y)²) of the luma y = 0.299 R + 0.587 G + 0.114 B, per pixel."""
    from facecloak.models.hiding import gaussian_lowpass

    y = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    mu = gaussian_lowpass(y, sigma, 3.0)
    return (gaussian_lowpass(y * y, sigma, 3.0) - mu * mu).clamp_min(0).sqrt()


def reshaped(name: str):
    kind, *args = name.split("_")
    vals = {a[0]: float(a[1:]) for a in args}

    def run(x: torch.Tensor, keys: list[str], ctx) -> torch.Tensor:
        from facecloak.models.warp import warp

        ck = ctx.cloaker
        rngs = [random.Random(f"{ctx.cfg.seed}:{k}") for k in keys]  # as eval's facecloak rows
        fake, _ = ck.identities_for(x, rngs, list(range(len(keys))))
        with torch.no_grad():
            r, flow = ck.hn.components(x, fake.to(x.dtype))
            if kind == "split":
                return (warp(x, flow * vals["a"]) + vals["b"] * r).clamp(0, 1)
            d = (warp(x, flow) + r).clamp(0, 1)
            sd = local_std(x)
            w = sd / (sd + vals["t"]) if kind == "texture" else vals["t"] / (sd + vals["t"])
            return (x + w / w.mean(dim=(2, 3), keepdim=True) * (d - x)).clamp(0, 1)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="split_a0_b1,split_a0.5_b1,split_a1_b0.6,texture_t0.02,flat_t0.02")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from crop_rows import eval_crops_with_rows

    eval_crops_with_rows({n: reshaped(n) for n in args.variants.split(",") if n}, args.out, args.weights)


if __name__ == "__main__":
    main()
