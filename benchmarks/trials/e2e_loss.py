"""Where does a strong-mode setting lose protection between the benchmark crop and the photo?

Run: python benchmarks/trials/e2e_loss.py [--strengths high] [--variant 'NAME={"base": "high", ...}'] [--limit 40] [--out F.json]

For the ORL probes' photos as the eval's end-to-end protocol has them (framed JPEG copies), each
preset or variant is scored by same-photo ASR (best-accuracy thresholds of the committed strong
report) at three points, always against the RetinaFace-aligned crop of the original photo:

* ``crop_on_e2e_cover``: that crop protected as an aligned crop (``--aligned``): the cover of a
  photo, without the paste-back;
* ``photo_png``: the photo protected as ``facecloak protect`` does (paste-back), cut out again at
  the same landmarks, before any file format;
* ``photo_jpeg95``: the same photo after JPEG at quality 95, as ``protect`` saves it.

The eval's own crop figure (the benchmark's crops) and its end-to-end figure (the attacker's dlib
re-alignment on top) bracket these; ``strong_tradeoff.py --e2e`` gives both.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strengths", default="high")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks/results/eval-orl-strong/report.json")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    spec = importlib.util.spec_from_file_location("strong_tradeoff", ROOT / "benchmarks/strong_tradeoff.py")
    st = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(st)
    names = [n for n in args.strengths.split(",") if n] + [st.register_variant(v) for v in args.variant]

    from facecloak.align import warp_face
    from facecloak.cloak import CloakConfig, Cloaker
    from facecloak.eval.e2e import photo_set
    from facecloak.eval.runner import to_batch
    from facecloak.imageio import load_image
    from facecloak.pretrained import build_cloaker, load_recognizer

    thresholds = json.loads(args.report.read_text())["thresholds"]
    bench, keys, _ = st.orl_probes(args.limit)
    probes = [k for k in keys if k in bench.photos]
    photos = {k: load_image(p).rgb for k, p in photo_set(bench.photos, probes).items()}
    base = build_cloaker(device="cpu", config=CloakConfig(seed=0))
    recs = {n: load_recognizer(n, "cpu") for n in st.BLACK_BOXES}
    out = {}
    for name in names:
        ck = Cloaker(base.hn, base.en, base.bank, base.detector, CloakConfig(mode="strong", strength=name, seed=0), device="cpu")
        covers, png, jpg = [], [], []
        for k in probes:
            res = ck.protect(photos[k])
            lm = np.array(max(res.faces, key=lambda f: f.score).landmarks)
            covers.append(warp_face(photos[k], lm)[0])
            png.append(warp_face(res.rgb, lm)[0])
            buf = io.BytesIO()
            Image.fromarray(res.rgb).save(buf, "JPEG", quality=95)
            jpg.append(warp_face(np.asarray(Image.open(buf).convert("RGB")), lm)[0])
        crops = [r.rgb for r in ck.protect_crops(covers)]
        row = out[name] = {}
        with torch.no_grad():
            for n, m in recs.items():
                f0, t = m(to_batch(covers)), thresholds[n]["best_accuracy"]
                row[n] = {label: st.same_photo_asr((m(to_batch(v)) * f0).sum(1).numpy(), t)
                          for label, v in (("crop_on_e2e_cover", crops), ("photo_png", png), ("photo_jpeg95", jpg))}
        print(name, json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"probes": len(probes), "thresholds_from": str(args.report.resolve().relative_to(ROOT)), "rows": out}, indent=2))


if __name__ == "__main__":
    main()
