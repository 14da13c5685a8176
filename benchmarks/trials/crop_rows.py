"""Shared by the fast-mode trials: run `facecloak eval --benchmark orl --no-e2e` with extra rows.

Each row is a function ``(x, keys, ctx) -> D`` (ctx.cloaker, ctx.cfg as eval's own rows get them),
added to eval's method table beside ``facecloak_fast``, so a trial is measured by the same
protocols, thresholds and report as the shipped method.
"""
from __future__ import annotations


def eval_crops_with_rows(rows: dict, out: str, weights: str | None = None) -> None:
    import torch

    from facecloak.eval import benchmark as B
    from facecloak.eval import runner as R

    torch.set_num_threads(1)
    table = R.method_table
    R.method_table = lambda cfg: {**table(cfg), **rows}
    cfg = R.EvalConfig(methods=("facecloak_fast", *rows), out=out, weights=weights, e2e=False, device="cpu")
    R.run_eval(B.orl_benchmark(0, "cpu"), cfg)
