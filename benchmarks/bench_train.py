"""Training throughput of the hiding network (images/s), with the real EN and VGG-16 critics,
and where the time of one step goes.

Run: python benchmarks/bench_train.py [--device cpu|cuda] [--batch 8] [--loss-size 256]
     [--work-size 256] [--loss-crop N] [--ssim] [--steps 5] [--threads N]

Prints JSON: seconds per step, images/s, and a breakdown of one step into HN forward,
critics forward (EN + VGG) and the backward pass (+ optimiser step). Also the arithmetic of one
training image (multiply-accumulates of every convolution and linear layer, forward passes
counted by hooks; a backward pass costs its forward again for the input gradient, twice for the
network that also gets weight gradients) and the GFLOP/s that the measured step rate implies:
set beside the core's peak (8-wide AVX2 FMA, two per cycle: 32 FLOP per cycle), it says how much
a faster kernel could still give.
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


def forward_macs(module: torch.nn.Module, *inputs) -> int:
    """Multiply-accumulates of one forward pass: Σ over Conv2d of out_elems · in_ch / groups · kH · kW,
    plus Σ over Linear of out_elems · in_features (counted by forward hooks, batch of one)."""
    total = 0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def step_macs(hn, critics, loss_size: int, device) -> dict[str, float]:
    """GMAC per training image: HN forward + backward (input and weight gradients: 3x forward), VGG
    on C (forward) and D (forward + input-gradient backward: 2x), EN likewise; EOT and the pixel
    terms are not counted."""
    x = torch.rand(1, 3, 256, 256, device=device)
    e = torch.nn.functional.normalize(torch.randn(1, 512, device=device), dim=1)
    vgg = forward_macs(_Trunk(critics.lpips), torch.rand(1, 3, loss_size, loss_size, device=device))
    en = forward_macs(critics.en, x)
    hnm = forward_macs(hn, x, e)
    return {"hn": 3 * hnm / 1e9, "vgg": 3 * vgg / 1e9, "en": 3 * en / 1e9, "total": 3 * (hnm + vgg + en) / 1e9}


class _Trunk(torch.nn.Module):
    """LPIPS-vgg's trunk as a module, so hooks see its layers."""

    def __init__(self, lp):
        super().__init__()
        self.lp = lp

    def forward(self, x):
        return self.lp.trunk(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--loss-size", type=int, default=256)
    ap.add_argument("--work-size", type=int, default=256)
    ap.add_argument("--loss-crop", type=int, default=0, help="VGG terms on one corner N x N window of the loss-size face, importance-weighted (0: whole face)")
    ap.add_argument("--ssim", action="store_true", help="add the 256-px SSIM term (v0.8 recipe)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    critics = Critics(device, args.loss_size, args.loss_crop or None)
    hn = HidingNet(HidingNetConfig(head_init_std=0.01, work_size=args.work_size)).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    hn, critics = hn.to(memory_format=fmt), critics.to(memory_format=fmt)
    opt = torch.optim.Adam(hn.parameters(), lr=1e-4)
    amp = device.type == "cuda"
    x = torch.rand(args.batch, 3, 256, 256, device=device).contiguous(memory_format=fmt)
    e = torch.nn.functional.normalize(torch.randn(args.batch, 512, device=device), dim=1)
    g = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(times: dict | None = None):
        t0 = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            d = hn(x, e)
            sync()
            t1 = time.perf_counter()
            w = L.LossWeights(ssim=1.0 if args.ssim else 0.0)
            loss = L.total_loss(critics.terms(x, d.float(), e, 0.1, g, ssim=args.ssim, window=g), w)
            sync()
            t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        t3 = time.perf_counter()
        if times is not None:
            for k, v in (("hn_forward", t1 - t0), ("critics_forward", t2 - t1), ("backward_and_step", t3 - t2)):
                times[k] = times.get(k, 0.0) + v

    step()
    times: dict = {}
    t = time.perf_counter()
    for _ in range(args.steps):
        step(times)
    sec = (time.perf_counter() - t) / args.steps
    gmac = step_macs(hn, critics, critics.loss_crop or args.loss_size, device)
    print(json.dumps({"device": str(device), "batch": args.batch, "loss_size": args.loss_size, "loss_crop": critics.loss_crop, "ssim": args.ssim, "work_size": args.work_size,
                      "channels_last": args.channels_last, "threads": torch.get_num_threads(),
                      "seconds_per_step": round(sec, 3), "images_per_s": round(args.batch / sec, 2),
                      "breakdown_s": {k: round(v / args.steps, 3) for k, v in times.items()},
                      "gmac_per_image": {k: round(v, 2) for k, v in gmac.items()},
                      "gflops_per_s": round(2 * gmac["total"] * args.batch / sec, 1), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
