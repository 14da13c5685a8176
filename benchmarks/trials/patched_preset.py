"""Trial runs of strong mode with a preset changed, measured by `facecloak eval` itself: replaces
``facecloak.strong.PRESETS[NAME]`` by NAME with the JSON fields changed (``register_variant`` of
`benchmarks/strong_tradeoff.py`, whose `--variant` does the same for the quicker same-photo
measure), then runs the eval command in-process with ``--strength NAME``.

Run (README "Retuning `medium`": medium with high's surrogate targets, v0.4 weights)::

    python benchmarks/trials/patched_preset.py medium \\
        '{"targets": [["arcface_mbf", -0.05], ["facenet_casia", 0.1]]}' \\
        --benchmark orl --methods facecloak_strong --weights v04.safetensors \\
        --out benchmarks/results/trial-medium-high-targets
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def main() -> None:
    spec = importlib.util.spec_from_file_location("strong_tradeoff", Path(__file__).resolve().parents[1] / "strong_tradeoff.py")
    tradeoff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tradeoff)
    from facecloak import strong as S
    from facecloak.cli import app

    name, body, *eval_args = sys.argv[1:]
    tradeoff.register_variant(f"{name}=" + json.dumps({**json.loads(body), "base": name}))
    print(S.PRESETS[name], flush=True)
    sys.argv = ["facecloak", "eval", *eval_args, "--strength", name]
    app()


if __name__ == "__main__":
    main()
