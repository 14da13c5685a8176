"""Cost of the second detection pass on a normal 12 MP photo (4000x3000, one face).

Run: python benchmarks/bench_detect.py [--device cpu|cuda] [--repeat 3]
Prints a JSON summary: detection with the 1280 px first pass only (``min_eye=None``) and with
the tiled second pass that the default ``--min-face 20`` adds, as wall and process CPU time (on a
shared machine, run it with OMP_NUM_THREADS=1 and read the CPU time); figures go in the README.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import cv2
    import torch
    from PIL import Image

    from facecloak.detect import FaceDetector, detection_scale, second_pass_scale, tile_grid, tile_overlap

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    astro = np.asarray(Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB"))
    photo = cv2.resize(astro, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    s1 = detection_scale(3000, 4000, 1280, 320)
    s2 = second_pass_scale(s1, 20.0)
    ov = tile_overlap(s1, s2, 1280)
    tiles = [(b - a) * (d - c) for a, b, _, _ in tile_grid(round(3000 * s2), 1280, ov) for c, d, _, _ in tile_grid(round(4000 * s2), 1280, ov)]
    out = {"device": args.device, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "load_average": os.getloadavg()[0], "first_pass_scale": s1, "second_pass_scale": s2,
           "second_pass_tiles": len(tiles), "pixels_ratio": sum(tiles) / (round(3000 * s1) * round(4000 * s1))}
    for label, min_eye in (("one_pass", None), ("two_passes", 20.0)):
        det = FaceDetector(args.device, min_eye=min_eye)
        det.detect(photo)  # warm-up
        wall, cpu = [], []
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            n = len(det.detect(photo))
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        out[label] = {"seconds_min": round(min(wall), 3), "cpu_seconds_min": round(min(cpu), 3), "faces": n}
    out["second_pass_extra_seconds"] = round(out["two_passes"]["seconds_min"] - out["one_pass"]["seconds_min"], 3)
    out["second_pass_extra_cpu_seconds"] = round(out["two_passes"]["cpu_seconds_min"] - out["one_pass"]["cpu_seconds_min"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
