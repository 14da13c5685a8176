"""Which protected faces a 3-bit depth reduction gives back to the recognizers, and what the
surrogates see of it (issue 9: SFace's 3-bit drop).

Run: python benchmarks/trials/quant_flips.py high [--variant 'NAME={"base": "high", ...}'] --out FILE.json

The 40 ORL evaluation probes are protected as ``facecloak eval`` does (``strong_tradeoff.protect``),
then scored on the benchmark's 313 genuine pairs (protected probe vs another photo of the same
person) as they are and after the eval's 3-bit attack, by EN (ArcFace), FaceNet, SFace and dlib at
the best-accuracy thresholds of the committed strong-mode report. Prints, per recognizer, the mean
genuine-pair cosine and the ASR clean / 3-bit, and lists the pairs SFace matches only after the
attack with every recognizer's cosine before and after it. Writes quality, the summaries and the
per-pair cosines to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from strong_tradeoff import ROOT, bit_depth_3, orl_probes, protect, register_variant  # noqa: E402

RECOGNIZERS = ("arcface_mbf", "facenet_casia", "sface", "dlib_resnet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("strength", help="a preset name, or NAME={json} as strong_tradeoff.py --variant")
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks/results/eval-orl-strong/report.json")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from facecloak.cloak import CloakConfig
    from facecloak.eval.runner import _quality, to_batch
    from facecloak.pretrained import build_cloaker, load_recognizer
    from facecloak.train.data import read_rgb

    torch.set_num_threads(1)
    thresholds = json.loads(args.report.read_text())["thresholds"]
    bench, keys, originals = orl_probes(40)
    genuine = [(a, b) for a, b, same in bench.pairs if same and a in originals]
    gallery = sorted({b for _, b in genuine})
    x = to_batch([originals[k] for k in keys])
    g = to_batch([read_rgb(bench.crops[b]) for b in gallery])
    ck = build_cloaker(device="cpu", config=CloakConfig(seed=0))
    name = register_variant(args.strength) if "=" in args.strength else args.strength
    d, cpu = protect(ck, x, keys, "strong", name)
    q = _quality(originals, dict(zip(keys, d)))
    out = {"strength": args.strength, "cpu_seconds_per_face": round(cpu, 2), "psnr": q["psnr"]["mean"], "ssim": q["ssim"]["mean"],
           "lpips_alex": q["lpips"]["mean"], "pairs": genuine, "recognizers": {}}
    print(name, json.dumps({k: out[k] for k in ("cpu_seconds_per_face", "psnr", "ssim", "lpips_alex")}))
    idx = [(keys.index(a), gallery.index(b)) for a, b in genuine]
    with torch.no_grad():
        for n in RECOGNIZERS:
            m = load_recognizer(n, "cpu")
            fg, fd, fq = m(g).numpy(), m(to_batch(list(d))).numpy(), m(to_batch(list(bit_depth_3(d)))).numpy()
            c = np.array([fd[i] @ fg[j] for i, j in idx])
            cq = np.array([fq[i] @ fg[j] for i, j in idx])
            t = thresholds[n]["best_accuracy"]
            row = {"threshold": t, "mean_cos": float(c.mean()), "mean_cos_3bit": float(cq.mean()), "asr": float((c < t).mean()),
                   "asr_3bit": float((cq < t).mean()), "cos": c.tolist(), "cos_3bit": cq.tolist()}
            out["recognizers"][n] = row
            print(n, json.dumps({k: round(v, 4) for k, v in row.items() if not isinstance(v, list)}))
    r = out["recognizers"]
    flips = [k for k in range(len(genuine)) if r["sface"]["cos"][k] < r["sface"]["threshold"] <= r["sface"]["cos_3bit"][k]]
    out["sface_flips"] = [{"pair": genuine[k], **{n: [round(r[n]["cos"][k], 3), round(r[n]["cos_3bit"][k], 3)] for n in RECOGNIZERS}} for k in flips]
    print(f"{len(flips)} pairs SFace matches only after 3-bit depth")
    for f in out["sface_flips"]:
        print(json.dumps(f))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
