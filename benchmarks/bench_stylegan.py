"""Speed of canonical 256 StyleGAN faces (covers, fake identities) per backend.

Run: python benchmarks/bench_stylegan.py [--device cpu|cuda] [--threads 1] [--n 8] [--batch 4]
Prints a JSON summary. On CPU it reports CPU time per face (``time.process_time``) beside wall
time, because on a shared machine wall time measures the other jobs as much as this one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def measure(gen, backend: str, n: int, batch: int) -> dict:
    from facecloak.zoo.stylegan import stylegan_faces_canonical

    stylegan_faces_canonical(gen, batch, seed=0, batch=batch, backend=backend)  # warm-up (and ONNX export)
    if gen.w_avg.device.type == "cuda":
        torch.cuda.synchronize()
    cpu, wall = time.process_time(), time.perf_counter()
    stylegan_faces_canonical(gen, n, seed=1, batch=batch, backend=backend)
    if gen.w_avg.device.type == "cuda":
        torch.cuda.synchronize()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"faces_per_s_wall": round(n / wall, 3), "cpu_s_per_face": round(cpu / n, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from facecloak.zoo.stylegan import load_stylegan

    gen = load_stylegan(args.device)
    backends = ["torch", "onnx"] if args.device == "cpu" else ["torch"]
    out = {
        "device": args.device,
        "threads": args.threads,
        "batch": args.batch,
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1min": round(os.getloadavg()[0], 1),
        **{b: measure(gen, b, args.n, args.batch) for b in backends},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
