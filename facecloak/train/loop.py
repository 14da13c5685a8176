"""The training loop for the hiding network (section 4.2 of the paper).

Single process: ``facecloak train ...``. Several processes or GPUs: the same command under
``torchrun --nproc_per_node N -m facecloak train ...``; PyTorch DistributedDataParallel
(gloo on CPU, nccl on CUDA) does the gradient averaging, a DistributedSampler shards the
covers. Rank 0 alone logs, writes previews and checkpoints.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from ..models.hiding import HidingNet, HidingNetConfig, init_from, save_hiding_net
from ..pretrained import resolve_device
from . import losses as L
from .data import CoverDataset, FakeBank, list_crops, split_train_val
from .eot import DEGRADATIONS

#: The EN block whose output map L_mid compares (the end of MobileFaceNet's stage 2, 14x14x256).
MID_TAP = 11


@dataclass
class TrainConfig:
    """Every knob of a training run; the merged config is saved next to each checkpoint."""

    covers: str = ""  # folder of canonical 256 crops (see `facecloak train --help` for preparing them)
    val_covers: str | None = None  # held-out crops; None: a seeded val_fraction of `covers`
    out: str = "runs/hn"
    fakes: str = "dcgan"  # "dcgan" (generated on the fly, seeded) or a folder of aligned fake faces
    n_fakes: int = 1024
    epochs: int = 150
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-5
    plateau_factor: float = 0.2
    plateau_patience: int = 5
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA only
    num_workers: int = 0
    resume: bool = False
    init: str | None = None  # start from these hiding-net weights (same width; cfg.hn's other fields apply)
    log_every: int = 10
    loss_size: int = 256  # resolution the VGG/LPIPS losses see (lower it to train faster on CPU)
    loss_crop: int | None = None  # VGG/LPIPS terms on one corner loss_crop² window of the loss_size image, importance-weighted (train.losses.random_windows)
    eot: bool = False  # EN sees a randomly blurred / resized / quantised D (train.eot)
    eot_kinds: tuple[str, ...] = DEGRADATIONS  # what train.eot.random_degrade draws from
    grow_covers: bool = False  # re-list the cover folders every epoch (covers still being generated)
    checkpoint_every: int | None = None  # also validate and checkpoint every N steps (long epochs on a CPU)
    soft_covers: float = 0.0  # share of training covers made soft, as an enlarged small face (train.data.soften)
    keep_grey: bool = False  # train on what protect returns for grey covers: D with its colour taken out (cloak.keep_grey)
    warp_lr_mult: float = 1.0  # the warp head learns at lr x this (a head added to trained weights starts at zero)
    hn: HidingNetConfig = field(default_factory=HidingNetConfig)
    weights: L.LossWeights = field(default_factory=L.LossWeights)


def param_groups(hn: HidingNet, lr: float, warp_lr_mult: float = 1.0) -> list[dict]:
    """Adam parameter groups: everything at ``lr``, the warp head (if any) at ``lr · warp_lr_mult``.
    A head added to trained weights starts at zero beside a residual path that already does the
    job; a larger step lets the loss find out whether moving pixels is cheaper than shading them."""
    head = [p for n, p in hn.named_parameters() if n.startswith("flow_head.")]
    rest = [p for n, p in hn.named_parameters() if not n.startswith("flow_head.")]
    return [{"params": rest, "lr": lr}] + ([{"params": head, "lr": lr * warp_lr_mult}] if head else [])


def list_cover_crops(covers: str) -> list[Path]:
    """Crops of every folder in ``covers``, which may join several folders with ``os.pathsep``."""
    return sorted(p for folder in covers.split(os.pathsep) if folder for p in list_crops(Path(folder)) if not p.name.endswith(".part.png"))


def _ddp_setup(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), world


class Critics(torch.nn.Module):
    """The frozen networks the losses need: EN (ArcFace) and VGG-16 (perceptual + LPIPS)."""

    def __init__(self, device: torch.device, loss_size: int = 256, loss_crop: int | None = None):
        super().__init__()
        from ..zoo.arcface import load_arcface
        from ..models.lpips import load_lpips

        self.en = load_arcface(device=device)
        self.lpips = load_lpips("vgg", device=device)
        self.loss_size = loss_size
        self.loss_crop = loss_crop if loss_crop and loss_crop < loss_size else None

    def terms(self, cover, deid, feat_embed, margin: float | None = None, degrade: torch.Generator | None = None,
              kinds: tuple[str, ...] = DEGRADATIONS, ssim: bool = False, mid: bool = False,
              window: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The paper's five loss terms (``ssim`` too when asked: a 256-px pass that a run with
        λ_ssim = 0 need not pay for; ``mid`` too when asked, from the same EN passes, at
        ``MID_TAP``) and ``cos``, the plain cos(EN(C), EN(D)) for the log.

        ``degrade``: a generator; when given, EN sees a randomly degraded D (``train.eot``), one of
        ``kinds``.

        ``window``: a generator; when given and the critics have a ``loss_crop``, the VGG terms
        (perceptual, LPIPS) see one of the four corner ``loss_crop``² windows per face, the same in C
        and D, importance-weighted (``losses.random_windows``): a cheaper, unbiased estimate of
        their spatial mean. Validation passes none, so it always scores the whole face.
        """
        from ..models.lpips import unit_normalize
        from .eot import random_degrade

        c, d = cover, deid
        if self.loss_size != cover.shape[-1]:
            c = torch.nn.functional.interpolate(cover, size=self.loss_size, mode="bilinear", antialias=True)
            d = torch.nn.functional.interpolate(deid, size=self.loss_size, mode="bilinear", antialias=True)
        w = None
        if window is not None and self.loss_crop:
            c, d, w = L.random_windows(c, d, self.loss_crop, window)
        # One VGG-16 pass serves both LPIPS-vgg (all five taps) and the perceptual loss (the
        # last tap, relu5_3: LPIPS's scaling layer is ImageNet normalisation for [-1, 1] input).
        with torch.no_grad():
            tc = self.lpips.trunk(c * 2 - 1)
            f_c, h_c = self._en(cover, mid)
        td = self.lpips.trunk(d * 2 - 1)
        lp = sum((L.weights_at(w, a) * lin((unit_normalize(a) - unit_normalize(b)) ** 2)).mean(dim=(1, 2, 3)) for lin, a, b in zip(self.lpips.lins, tc, td))
        f_d, h_d = self._en(random_degrade(deid, degrade, kinds)[0] if degrade is not None else deid, mid)
        out = {
            "rec": L.rec_loss(cover, deid),
            "perc": L.perc_loss(tc[-1], td[-1], w),
            "lpips": lp.mean(),
            "near": L.near_loss(feat_embed, f_d),
            "far": L.far_loss(f_c, f_d, margin),
            "cos": torch.nn.functional.cosine_similarity(f_c, f_d, dim=1).mean().detach(),
        }
        if ssim:
            out["ssim"] = L.ssim_loss(cover, deid)
        if mid:
            out["mid"] = L.mid_loss(h_c, h_d)
        return out

    def _en(self, x: torch.Tensor, mid: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """EN's normalised feature and, when ``mid``, its feature map at ``MID_TAP``."""
        e, h = self.en.embed_tap(x, MID_TAP if mid else None)
        return torch.nn.functional.normalize(e.float(), dim=1), h


def _as_protected(cover: torch.Tensor, deid: torch.Tensor, grey: bool) -> torch.Tensor:
    """D as ``facecloak protect`` would return it: with ``grey``, a greyscale cover's change loses
    its colour (``cloak.keep_grey``), so the losses see what a user gets."""
    from ..cloak import keep_grey

    return keep_grey(cover, deid) if grey else deid


def build_fake_bank(cfg: TrainConfig, en, device) -> FakeBank:
    if cfg.fakes == "dcgan":
        from ..zoo.dcgan import fake_faces_canonical, load_dcgan

        faces = fake_faces_canonical(load_dcgan(device=device), cfg.n_fakes, seed=cfg.seed)
    else:
        from .data import read_rgb, to_tensor

        paths = list_crops(Path(cfg.fakes))[: cfg.n_fakes]
        if not paths:
            raise FileNotFoundError(f"no fake-face images in {cfg.fakes}")
        faces = torch.stack([to_tensor(read_rgb(p)) for p in paths])
    return FakeBank.from_images(faces, en, device)


def _preview(cover: torch.Tensor, deid: torch.Tensor, path: Path) -> None:
    """Save rows of C | D | 10x|D - C| (the paper's Fig. 17 view)."""
    from PIL import Image

    diff = ((deid - cover).abs() * 10).clamp(0, 1)
    rows = torch.cat([torch.cat([c, d, e], 2) for c, d, e in zip(cover, deid, diff)], 1)
    arr = (rows.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype("uint8")
    Image.fromarray(arr).save(path)


def _checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Run training; return a summary (best validation loss, steps, wall time, paths)."""
    device = resolve_device(cfg.device)
    rank, world = _ddp_setup(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    if rank == 0:
        (out / "previews").mkdir(parents=True, exist_ok=True)

    paths = list_cover_crops(cfg.covers)
    if len(paths) < 2:
        raise FileNotFoundError(f"need at least 2 face crops in {cfg.covers!r}, found {len(paths)}")
    if cfg.val_covers:
        train_paths, val_paths = paths, list_crops(Path(cfg.val_covers))
    else:
        train_paths, val_paths = split_train_val(paths, cfg.val_fraction, cfg.seed)
    train_ds, val_ds = CoverDataset(train_paths, True, cfg.seed, soft=cfg.soft_covers), CoverDataset(val_paths, False)
    sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    loader = DataLoader(
        train_ds, cfg.batch_size, shuffle=sampler is None, sampler=sampler, num_workers=cfg.num_workers, drop_last=len(train_ds) >= cfg.batch_size * world
    )
    val_loader = DataLoader(val_ds, cfg.batch_size, shuffle=False)

    critics = Critics(device, cfg.loss_size, cfg.loss_crop)
    bank = build_fake_bank(cfg, critics.en, device)
    hn = HidingNet(cfg.hn).to(device)
    if cfg.init:  # the weights of a saved net, under this run's config (e.g. a new work_size)
        init_from(hn, cfg.init, device)
    model = torch.nn.parallel.DistributedDataParallel(hn) if world > 1 else hn
    opt = torch.optim.Adam(param_groups(hn, cfg.lr, cfg.warp_lr_mult))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    state = {"epoch": 0, "step": 0, "best_val": math.inf, "wall": 0.0}
    last = out / "last.pt"
    if cfg.resume and last.exists():
        ck = torch.load(last, map_location=device, weights_only=True)
        hn.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        state.update({k: ck[k] for k in state})
        torch.manual_seed(cfg.seed + state["step"])  # a run resumed mid-epoch reshuffles, not replays, its covers
    if rank == 0:
        (out / "config.json").write_text(json.dumps(_config_record(cfg, train_paths, val_paths, world), indent=2))

    amp = cfg.amp and device.type == "cuda"
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    bar = _progress(progress and rank == 0)
    steps_total = cfg.max_steps or cfg.epochs * max(1, len(loader))
    task = bar.add_task("train", total=steps_total, completed=state["step"], loss=float("nan")) if bar else None
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    t0 = time.time() - state["wall"]
    done = False
    try:
        while state["epoch"] < cfg.epochs and not done:
            if sampler:
                sampler.set_epoch(state["epoch"])
            train_ds.epoch = state["epoch"]
            if cfg.grow_covers and sampler is None:  # pick up covers written since the last epoch
                new = sorted(set(list_cover_crops(cfg.covers)) - set(train_ds.paths) - set(val_paths))
                if new:
                    train_ds.paths += new
                    loader = DataLoader(train_ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, drop_last=True)
            model.train()
            for cover in loader:
                cover = cover.to(device, non_blocking=True)
                e = bank.sample(cover.shape[0], g).to(device)
                with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                    deid = _as_protected(cover, model(cover, e), cfg.keep_grey)
                    terms = critics.terms(cover, deid.float(), e, cfg.weights.far_margin, g if cfg.eot else None, cfg.eot_kinds, cfg.weights.ssim > 0, cfg.weights.mid > 0, window=g)
                    loss = L.total_loss(terms, cfg.weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                state["step"] += 1
                if log and (state["step"] % cfg.log_every == 0 or state["step"] == 1):
                    rec = {"step": state["step"], "epoch": state["epoch"], "loss": loss.item(), "lr": opt.param_groups[0]["lr"]}
                    rec.update({k: v.item() for k, v in terms.items()})
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                if bar:
                    bar.update(task, advance=1, loss=loss.item())
                if cfg.max_steps and state["step"] >= cfg.max_steps:
                    done = True
                    break
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                    state["wall"] = time.time() - t0
                    _checkpoint(hn, opt, sched, state, _validate(hn, critics, val_loader, bank, cfg, device, amp), rank, log, out, val_ds, bank, device)
                    model.train()
            state["epoch"] += 1
            state["wall"] = time.time() - t0
            _checkpoint(hn, opt, sched, state, _validate(hn, critics, val_loader, bank, cfg, device, amp), rank, log, out, val_ds, bank, device)
    finally:
        if bar:
            bar.stop()
        if log:
            log.close()
    if world > 1:
        (out / f"ddp_rank{rank}_checksum.txt").write_text(repr(_checksum(hn)))
        dist.barrier()
        dist.destroy_process_group()
    return {**state, "out": str(out), "world_size": world}


def _checkpoint(hn, opt, sched, state: dict, val: dict, rank: int, log, out: Path, val_ds, bank, device) -> None:
    """After a validation: step the plateau schedule (each validation counts once), and on rank 0
    log it, keep best/last weights, the resumable ``last.pt`` and a preview named by epoch and step."""
    sched.step(val["loss"])
    if rank != 0:
        return
    log.write(json.dumps({"epoch": state["epoch"], "step": state["step"], "val": val, "wall_s": state["wall"]}) + "\n")
    log.flush()
    if val["loss"] < state["best_val"]:
        state["best_val"] = val["loss"]
        save_hiding_net(hn, out / "best.safetensors", extra={"val": val, "step": state["step"]})
    save_hiding_net(hn, out / "last.safetensors", extra={"val": val, "step": state["step"]})
    torch.save({"model": hn.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), **state}, out / "last.pt")
    _preview_epoch(hn, val_ds, bank, device, out / "previews" / f"epoch{state['epoch']:04d}-step{state['step']:06d}.png")


@torch.no_grad()
def _validate(hn, critics, loader, bank, cfg, device, amp) -> dict:
    """Mean loss terms on the held-out covers, with a fixed E per image (seeded)."""
    hn.eval()
    g = torch.Generator().manual_seed(12345)
    sums: dict[str, float] = {}
    n = 0
    for cover in loader:
        cover = cover.to(device)
        e = bank.sample(cover.shape[0], g).to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            deid = _as_protected(cover, hn(cover, e), cfg.keep_grey)
            terms = critics.terms(cover, deid.float(), e, cfg.weights.far_margin, ssim=cfg.weights.ssim > 0, mid=cfg.weights.mid > 0)
            terms["loss"] = L.total_loss(terms, cfg.weights)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v.item() * cover.shape[0]
        n += cover.shape[0]
    return {k: v / n for k, v in sums.items()}


@torch.no_grad()
def _preview_epoch(hn, val_ds, bank, device, path: Path, n: int = 4) -> None:
    cover = torch.stack([val_ds[i] for i in range(min(n, len(val_ds)))]).to(device)
    e = bank.sample(cover.shape[0], torch.Generator().manual_seed(7)).to(device)
    _preview(cover, hn.eval()(cover, e), path)


def _config_record(cfg: TrainConfig, train_paths, val_paths, world: int) -> dict:
    return {
        "config": asdict(cfg),
        "data": {"covers": cfg.covers, "n_train": len(train_paths), "n_val": len(val_paths), "fakes": cfg.fakes},
        "world_size": world,
        "torch": torch.__version__,
    }


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    bar.start()
    return bar
