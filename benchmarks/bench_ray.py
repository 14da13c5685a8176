"""Throughput of `facecloak protect --engine local` vs `--engine ray` with 1 and 2 workers, and Ray's start-up cost.

Run: nice python benchmarks/bench_ray.py [--copies 4] [--out benchmarks/results/bench_ray_cpu.json]
The folder is examples/ (3 photos with faces, 1 without) copied --copies times. Each engine
protects it into a fresh output folder with the CLI's defaults (fast mode, --batch-size 4).
Prints a JSON summary; figures go in the README (never in tests).

"photos_per_s_total" is photos over the whole call, including model loading (local) or actor
start and model loading in every actor (Ray); "first_record_s" is the call's start to the first
finished photo, mostly that start-up. "worker_s_per_photo" is the mean time a worker spent per
photo (each record's "seconds": its batch's read + protect + write time over the batch size),
and "photos_per_s_busy" = workers / worker_s_per_photo is the rate once every worker is busy.
(Ray hands finished rows to the driver in bursts, so the driver's clock cannot time that rate.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def make_folder(dst: Path, copies: int) -> int:
    dst.mkdir(parents=True)
    photos = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix == ".jpg")
    for k in range(copies):
        for p in photos:
            shutil.copy(p, dst / f"{p.stem}_{k}{p.suffix}")
    return copies * len(photos)


def rates(summary, t0: float, stamps: list[float], workers: int) -> dict:
    """photos/s over the whole call, and at the workers' own pace (see the module docstring)."""
    n, total = len(summary.records), stamps[-1] - t0
    per = sum(r.seconds for r in summary.records) / n
    return {"seconds": round(total, 2), "first_record_s": round(stamps[0] - t0, 2), "photos_per_s_total": round(n / total, 3),
            "worker_s_per_photo": round(per, 3), "photos_per_s_busy": round(workers / per, 3), "errors": summary.count("error")}


def bench_local(src: Path, out: Path, config) -> dict:
    from facecloak.pretrained import build_cloaker
    from facecloak.protect import ProtectOptions, run

    t0 = time.perf_counter()
    cloaker = build_cloaker(device="cpu", config=config)
    load = time.perf_counter() - t0
    stamps: list[float] = []
    summary = run(cloaker, [src], ProtectOptions(out=out), on_progress=lambda r: stamps.append(time.perf_counter()))
    return {"model_load_s": round(load, 2), "threads": torch.get_num_threads(), **rates(summary, t0, stamps, 1)}


def bench_ray(src: Path, out: Path, config, workers: int) -> dict:
    from facecloak.protect import ProtectOptions
    from facecloak.ray_engine import CloakerSpec, RayOptions, run

    stamps: list[float] = []
    t0 = time.perf_counter()
    summary = run(CloakerSpec(device="cpu", config=config), [src], ProtectOptions(out=out), RayOptions(num_workers=workers),
                  on_progress=lambda r: stamps.append(time.perf_counter()))
    return {"workers": workers, **rates(summary, t0, stamps, workers)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_ray_cpu.json")
    args = ap.parse_args()
    import ray

    from facecloak.cloak import CloakConfig

    config = CloakConfig(mode="fast", seed=0)
    res = {"device": "cpu", "cpu": platform.machine(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
           "ray": ray.__version__, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        res["photos"] = make_folder(src, args.copies)
        res["local"] = bench_local(src, Path(tmp) / "local", config)
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        res["ray_init_s"] = round(time.perf_counter() - t0, 2)
        try:
            for w in (1, 2):
                res[f"ray_{w}_worker{'s' if w > 1 else ''}"] = bench_ray(src, Path(tmp) / f"ray{w}", config, w)
        finally:
            t0 = time.perf_counter()
            ray.shutdown()
            res["ray_shutdown_s"] = round(time.perf_counter() - t0, 2)
    res["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
