"""`facecloak eval` with fast mode's default strength (``FAST_SCALES["medium"]``) set to another
factor s, so a candidate default is measured end to end as well as on crops (``--sweep`` scales
the crops only). The factor replaces `medium`'s 1 and is still multiplied by the weights' own
``fast_scale`` (v0.8: 1.1), so on v0.8's shipped file s = 1 of its raw change is 0.909.

Run (model card, "Quality vs protection", "Between `low` and `medium`": v0.7 at s = 0.8)::

    python benchmarks/trials/fast_scale.py 0.8 --benchmark orl --methods facecloak_fast \\
        --out benchmarks/results/trial-fast-s0.8
"""
from __future__ import annotations

import sys


def main() -> None:
    from facecloak import cloak
    from facecloak.cli import app

    scale, *eval_args = sys.argv[1:]
    cloak.FAST_SCALES["medium"] = float(scale)
    sys.argv = ["facecloak", "eval", *eval_args]
    app()


if __name__ == "__main__":
    main()
