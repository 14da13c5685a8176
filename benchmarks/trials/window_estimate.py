"""Does `facecloak train --loss-crop` estimate the whole-face VGG terms? (model card, "Training run (v1.0)")

Run: python benchmarks/trials/window_estimate.py [--weights FILE] [--draws 8] [--crops 64 80]

On the first 16 StyleGAN cover crops and the first 8 NBA headshot crops of the cover cache
(``facecloak data covers`` / the training pool's ``mix``), D is the given network's output for a
seeded fake feature; the script prints LPIPS-vgg and the perceptual MSE on the whole 112-px loss
face, and their mean over ``--draws`` corner-window draws (``Critics.terms(..., window=g)``) for
each window size. Prints JSON.
"""
from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    from facecloak.data.crops import nba_crops, stylegan_covers_dir
    from facecloak.models.hiding import load_hiding_net
    from facecloak.train.data import list_crops, read_rgb, to_tensor
    from facecloak.train.loop import Critics
    from facecloak.zoo.hiding import bundled_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(bundled_dir() / "hiding_net.safetensors"))
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--crops", type=int, nargs="+", default=[64, 80])
    args = ap.parse_args()
    paths = list_crops(stylegan_covers_dir())[:16] + list_crops(nba_crops())[:8]
    x = torch.stack([to_tensor(read_rgb(p)) for p in paths])
    e = torch.nn.functional.normalize(torch.randn(len(x), 512, generator=torch.Generator().manual_seed(0)), dim=1)
    with torch.no_grad():
        d = load_hiding_net(args.weights).eval()(x, e).float()
        out = {"weights": args.weights, "faces": len(x), "loss_size": 112, "draws": args.draws}
        for k in [None, *args.crops]:
            critics, g = Critics(torch.device("cpu"), 112, k), torch.Generator().manual_seed(0)
            runs = [critics.terms(x, d, e, window=g) for _ in range(args.draws if k else 1)]
            out["whole" if k is None else f"window_{k}"] = {t: round(sum(r[t].item() for r in runs) / len(runs), 4) for t in ("lpips", "perc")}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
