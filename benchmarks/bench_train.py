"""Training throughput of the hiding network (images/s), with the real EN and VGG-16 critics.

Run: python benchmarks/bench_train.py [--device cpu|cuda] [--batch 8] [--loss-size 256] [--steps 5]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from facecloak.models.hiding import HidingNet, HidingNetConfig
from facecloak.pretrained import resolve_device
from facecloak.train import losses as L
from facecloak.train.loop import Critics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--loss-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    device = resolve_device(args.device)
    critics = Critics(device, args.loss_size)
    hn = HidingNet(HidingNetConfig(head_init_std=0.01)).to(device)
    opt = torch.optim.Adam(hn.parameters(), lr=1e-4)
    amp = device.type == "cuda"
    x = torch.rand(args.batch, 3, 256, 256, device=device)
    e = torch.nn.functional.normalize(torch.randn(args.batch, 512, device=device), dim=1)

    def step():
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            d = hn(x, e)
            loss = L.total_loss(critics.terms(x, d.float(), e), L.LossWeights())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    sec = (time.perf_counter() - t) / args.steps
    print(json.dumps({"device": str(device), "batch": args.batch, "loss_size": args.loss_size, "threads": torch.get_num_threads(),
                      "seconds_per_step": sec, "images_per_s": args.batch / sec, "torch": torch.__version__}, indent=2))


if __name__ == "__main__":
    main()
