"""Speed of `facecloak protect`: hiding-network forward per face, and end to end on a 12 MP photo.

Run: python benchmarks/bench_protect.py [--device cpu|cuda] [--weights PATH]
Prints a JSON summary; figures go in the README (never in tests).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 3):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t) / repeat, out


def bench_network(hn, device, batch: int) -> float:
    x = torch.rand(batch, 3, 256, 256, device=device)
    f = torch.nn.functional.normalize(torch.randn(batch, 512, device=device), dim=1)

    def run():
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=device.type == "cuda"):
            y = hn(x, f)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return y

    sec, _ = timed(run, 5)
    return sec / batch


def bench_end_to_end(cloaker, workdir: Path) -> dict:
    """Stage times for one 4000x3000 photo with one face (astronaut upscaled), as the Cloaker runs them."""
    import cv2
    from PIL import Image

    from facecloak.align import warp_face
    from facecloak.cloak import paste_delta, photo_rng
    from facecloak.imageio import load_image, save_image

    src = workdir / "12mp.jpg"
    astro = np.asarray(Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB"))
    big = cv2.resize(astro, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(big).save(src, quality=92)
    stages = {}

    def stage(name, fn):
        t = time.perf_counter()
        out = fn()
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
        return out

    def once():
        img = stage("decode", lambda: load_image(src))
        faces = stage("detect", lambda: cloaker.detector.detect(img.rgb))
        crop, m = stage("align", lambda: warp_face(img.rgb, faces[0].landmarks))
        c = torch.from_numpy(crop[None]).permute(0, 3, 1, 2).float() / 255

        def net():
            fake, _ = cloaker.identities_for(c, [photo_rng(crop, 0)], [0])
            return cloaker.protect_aligned(c, fake)

        d = stage("network", net)
        delta = ((d - c) * 255)[0].permute(1, 2, 0).numpy()
        out = stage("paste", lambda: paste_delta(img.rgb, delta, m, cloaker.mask))
        stage("encode", lambda: save_image(workdir / "out.jpg", out, quality=95))
        return len(faces)

    once()  # warm-up
    stages.clear()
    n = 3
    for _ in range(n):
        once()
    stages = {k: v / n for k, v in stages.items()}
    total = sum(stages.values())
    return {"seconds": total, "stages_s": stages, "share": {k: v / total for k, v in stages.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    from facecloak.pretrained import build_cloaker, resolve_device

    device = resolve_device(args.device)
    t = time.perf_counter()
    cloaker = build_cloaker(weights=args.weights, device=str(device))
    load_s = time.perf_counter() - t
    res = {
        "device": str(device), "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "model_load_s": load_s,
        "network_ms_per_face": {f"batch{b}": 1000 * bench_network(cloaker.hn, device, b) for b in (1, 8)},
    }
    if device.type == "cuda":
        best = {b: 1 / bench_network(cloaker.hn, device, b) for b in (8, 32, 64, 128)}
        res["gpu_faces_per_s"] = best
    with tempfile.TemporaryDirectory() as d:
        res["end_to_end_12mp_one_face"] = bench_end_to_end(cloaker, Path(d))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
