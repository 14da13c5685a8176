"""``facecloak protect --engine ray``: the local engine's per-file work, spread over Ray actors.

The driver plans every destination once (:func:`facecloak.protect.plan`) and drops the outputs
that already exist (:func:`facecloak.protect.pending`); only the rest is shipped, as a Ray Data
dataset of (input, output) paths. An actor pool (``map_batches`` with a callable class) loads
the models once per actor and runs :func:`facecloak.protect.protect_batch` on each batch: the
actor reads the inputs and writes the outputs atomically itself, so photos never pass through
the driver. The per-file records come back and make the same :class:`~facecloak.protect.Summary`
as a local run. The fake identity of a face is drawn from the photo's content and ``--seed``
(:func:`facecloak.cloak.photo_rng`), so it does not depend on which actor protects the photo.
Inputs and --out may also be file-system URIs (``s3://``, ``gs://``, ``file://``...): then the
plan is a :class:`facecloak.storage.UriPlan`, and each actor works on local copies
(:func:`facecloak.storage.protect_via_local_copies`).

Ray is an optional extra (``pip install "facecloak[ray]"``) and is only imported here, lazily.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .protect import ImageRecord, Plan, ProtectOptions, Summary, _json_default, pending, plan, protect_batch

INSTALL_HINT = 'pip install "facecloak[ray]"'
#: Threads one CPU actor gets when --num-workers is not given: torch inference scales well to
#: about 4 threads per process; past that, more processes use the cores better.
CPU_THREADS_PER_ACTOR = 4


class RayUnavailable(RuntimeError):
    """Ray is missing or cannot be reached: a usage error (exit 2); the message says what to do."""


class SizingError(ValueError):
    """--num-workers / --gpus-per-worker / --device cannot be met by the cluster (exit 2)."""


class WorkerLoadError(RuntimeError):
    """An actor could not load the models (exit 3, like a local model failure)."""


@dataclass(frozen=True)
class RayOptions:
    """address: None starts a local Ray instance, ``auto`` or ``HOST:PORT`` / ``ray://HOST:PORT``
    joins a cluster; num_workers, gpus_per_worker: None sizes them from the cluster (:func:`size_workers`)."""

    address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float | None = None


@dataclass(frozen=True)
class CloakerSpec:
    """How each actor builds its Cloaker: the arguments of :func:`facecloak.pretrained.build_cloaker`.
    Each node resolves the models from its own cache (``facecloak models fetch`` on every node)."""

    weights: str | None = None
    hf_repo: str | None = None
    device: str = "auto"
    config: object = None  # a CloakConfig (mode, strength, min_face, seed)
    verify: bool = False
    bank: str | Path | None = None

    def build(self):
        from .pretrained import build_cloaker

        return build_cloaker(weights=self.weights, hf_repo=self.hf_repo, device=self.device, config=self.config,
                             verify=self.verify, bank=self.bank)


@dataclass(frozen=True)
class Sizing:
    """workers actors, each reserving ``cpus`` CPUs and ``gpus`` GPUs and running ``threads`` torch threads."""

    workers: int
    cpus: float
    gpus: float
    threads: int


def import_ray():
    """``ray`` with Ray Data, or :class:`RayUnavailable` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] part of the extra
    except ImportError as e:
        raise RayUnavailable(f"--engine ray needs Ray, which is not installed ({e}). Install it with: {INSTALL_HINT} "
                             "(or leave out --engine ray to protect in this process).") from e
    return ray


def size_workers(nodes: list[dict], device: str = "auto", num_workers: int | None = None,
                 gpus_per_worker: float | None = None) -> Sizing:
    """Actors and their resources from the nodes' resources (``[{"CPU": c_n, "GPU": g_n}, ...]``).

    GPU actors (device auto/cuda, the cluster has GPUs, gpus_per_worker g != 0; g defaults to 1,
    so one actor per GPU): workers = Σ_n floor(g_n / g) unless given, and each gets the CPUs its
    GPU share brings, cpus = max(1, min_n floor(c_n · g / g_n)) over the nodes with GPUs.
    CPU actors: with N = --num-workers, cpus = max(1, min(floor(Σ_n c_n / N), max_n c_n)) (an
    actor must fit on one node); without it, cpus = t = max(1, min(4, floor(max_n c_n))) and
    workers = max(1, Σ_n floor(c_n / t)). Either way threads =
    max(1, floor(cpus)), so the actors' torch threads add up to at most the cores they reserved.
    """
    cpu_nodes = [float(n.get("CPU", 0)) for n in nodes]
    gpu_nodes = [(float(n.get("CPU", 0)), float(n.get("GPU", 0))) for n in nodes if n.get("GPU", 0) > 0]
    total_gpu = sum(g for _, g in gpu_nodes)
    if device.startswith("cuda") and not total_gpu:
        raise SizingError(f"--device {device}: the Ray cluster has no GPU. Use --device cpu or auto, or add GPU nodes.")
    if gpus_per_worker and not total_gpu:
        raise SizingError(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has no GPU. Leave it out to use CPU actors.")
    if total_gpu and device != "cpu" and gpus_per_worker != 0:
        g = gpus_per_worker or 1.0
        slots = sum(math.floor(gn / g) for _, gn in gpu_nodes)
        if not slots:
            raise SizingError(f"--gpus-per-worker {g:g}: no node has that many GPUs (largest: {max(gn for _, gn in gpu_nodes):g}).")
        cpus = max(1, min(math.floor(cn * g / gn) for cn, gn in gpu_nodes))
        return Sizing(num_workers or slots, float(cpus), g, cpus)
    if not sum(cpu_nodes):
        raise SizingError("the Ray cluster reports no CPU; check `ray status`.")
    if num_workers:
        cpus = float(max(1, min(math.floor(sum(cpu_nodes) / num_workers), math.floor(max(cpu_nodes)))))
        return Sizing(num_workers, cpus, 0.0, int(cpus))
    t = max(1, min(CPU_THREADS_PER_ACTOR, math.floor(max(cpu_nodes))))
    workers = max(1, sum(math.floor(c / t) for c in cpu_nodes))
    return Sizing(workers, float(t), 0.0, t)


def actor_device(sizing: Sizing) -> str:
    """The --device an actor uses: the GPU Ray gave it (Ray makes it the actor's only visible one,
    so ``cuda:N`` would name a device it cannot see), else the CPU (a CPU actor must not pick up a
    GPU Ray did not give it)."""
    return "cuda" if sizing.gpus else "cpu"


class ProtectWorker:
    """One Ray actor: loads the models once, then protects the batches Ray Data hands it.

    A model failure is not raised (Ray would retry and bury it): every row then carries it in
    ``fatal``, and the driver stops with exit 3.
    """

    def __init__(self, spec: CloakerSpec, opts: ProtectOptions, threads: int, filesystems: list | None = None):
        import torch

        torch.set_num_threads(threads)
        # URI runs: the pyarrow file systems the rows' src_fs / dst_fs index (sent once per actor, not per row)
        self.opts, self.cloaker, self.fatal, self.filesystems = opts, None, "", filesystems or []
        try:
            self.cloaker = spec.build()
        except Exception as e:  # noqa: BLE001 - corrupt or missing models fail in many ways; all are exit 3
            self.fatal = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
        unavailable = getattr(self.cloaker, "unavailable_verifiers", {}) or {}
        self.warnings = json.dumps([f"--verify: {n} could not be loaded and did not check any face: {why}" for n, why in unavailable.items()])

    def __call__(self, batch: dict) -> dict:
        n = len(batch["src"])
        if self.cloaker is None:
            return {"record": [""] * n, "fatal": [self.fatal] * n, "warnings": [self.warnings] * n}
        if "src_fs" in batch:
            from .storage import Location, protect_via_local_copies

            fss = self.filesystems
            jobs = [(Location(fss[a], p, s), Location(fss[b], q, d)) for s, d, a, p, b, q in
                    zip(batch["src"], batch["dst"], batch["src_fs"], batch["src_path"], batch["dst_fs"], batch["dst_path"])]
            records = protect_via_local_copies(self.cloaker, jobs, self.opts)
        else:
            records = protect_batch(self.cloaker, [(Path(s), Path(d)) for s, d in zip(batch["src"], batch["dst"])], self.opts)
        return {"record": [json.dumps(dataclasses.asdict(r), default=_json_default) for r in records],
                "fatal": [""] * len(records), "warnings": [self.warnings] * len(records)}


def connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address`` or start a local instance; True when this call started Ray
    (the caller shuts it down). An instance already running in this process is reused."""
    _check_reachable(address)
    if ray.is_initialized():
        return False
    try:
        # "local": a new instance even when `ray start` left a cluster running (plain None would join it).
        ray.init(address=address or "local", include_dashboard=False if address is None else None, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise RayUnavailable(f"could not start or reach {where}: {str(e).rstrip('.')}. Check `ray status`, or leave out --ray-address to start Ray locally.") from e
    return True


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` address must accept a connection within ``timeout`` s: Ray itself would
    keep retrying an unreachable one for minutes."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise RayUnavailable(f"--ray-address {address}: nothing answers there ({e}). Start the cluster with "
                             "`ray start --head` (it prints the address), or use --ray-address auto on a cluster node.") from e


def alive_nodes(ray) -> list[dict]:
    """Each live node's total resources, for :func:`size_workers`."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def run(spec: CloakerSpec, inputs: Iterable[str | Path] | Plan, opts: ProtectOptions, ray_opts: RayOptions = RayOptions(),
        on_progress: Callable[[ImageRecord], None] | None = None, on_plan: Callable[[int], None] | None = None) -> Summary:
    """Protect every planned job on Ray actors; the same records and summary as :func:`facecloak.protect.run`.

    Raises RayUnavailable / SizingError (usage, exit 2) before any work, WorkerLoadError (exit 3).
    """
    ray = import_ray()
    t0 = time.perf_counter()
    p = inputs if isinstance(inputs, Plan) else plan(inputs, opts)
    summary = Summary(records=list(p.records), engine="ray")
    if on_plan:
        on_plan(len(p.jobs))
    todo, skipped = _pending(p, opts)  # done outputs are never shipped
    for rec in skipped:
        summary.records.append(rec)
        on_progress and on_progress(rec)
    if todo:
        started = connect(ray, ray_opts.address)
        try:
            sizing = size_workers(alive_nodes(ray), spec.device, ray_opts.num_workers, ray_opts.gpus_per_worker)
            done, warnings = _protect_on_actors(ray, spec, todo, opts, sizing, on_progress)
        finally:
            if started:
                ray.shutdown()
        order = {str(src): i for i, (src, _) in enumerate(todo)}
        summary.records += sorted(done, key=lambda r: order.get(r.input, len(order)))
        summary.warnings += warnings
    summary.wall = time.perf_counter() - t0
    return summary


def _pending(p: Plan, opts: ProtectOptions):
    from .storage import UriPlan, pending_uris  # imports pyarrow only for a URI plan

    return pending_uris(p, opts) if isinstance(p, UriPlan) else pending(p, opts)


def _rows(todo) -> tuple[list[dict], dict, list]:
    """The dataset's rows, the planned (input, output) names by the name a record comes back
    with, and the file systems the rows index (URI runs only).

    Local paths go as absolute paths (workers do not share the driver's working folder); URI
    jobs as their names plus an index into the file systems and the path inside it."""
    if not todo or not hasattr(todo[0][0], "fs"):
        given = {os.path.abspath(s): (str(s), str(d)) for s, d in todo}
        return [{"src": os.path.abspath(s), "dst": os.path.abspath(d)} for s, d in todo], given, []
    filesystems: list = []

    def index(fs) -> int:
        for i, known in enumerate(filesystems):
            if known.equals(fs):
                return i
        filesystems.append(fs)
        return len(filesystems) - 1

    rows = [{"src": s.uri, "dst": d.uri, "src_fs": index(s.fs), "src_path": s.path, "dst_fs": index(d.fs), "dst_path": d.path}
            for s, d in todo]
    return rows, {s.uri: (s.uri, d.uri) for s, d in todo}, filesystems


def _protect_on_actors(ray, spec, todo, opts, sizing: Sizing, on_progress) -> tuple[list[ImageRecord], list[str]]:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws one bar over files
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes go to Ray's log files (ray-data.log)
    spec = dataclasses.replace(spec, device=actor_device(sizing), weights=_absolute(spec.weights), bank=_absolute(spec.bank))
    # The records get back the names as planned. One block per batch, so an idle actor takes the next batch.
    rows, given, filesystems = _rows(todo)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(todo) / opts.batch_size)))
    # One batch in flight per actor: batches take seconds, and a queue behind a busy actor would idle the others.
    pool = ray.data.ActorPoolStrategy(size=sizing.workers, max_tasks_in_flight_per_actor=1)
    ds = ds.map_batches(ProtectWorker, fn_constructor_args=(spec, opts, sizing.threads, filesystems), batch_size=opts.batch_size,
                        batch_format="numpy", compute=pool, num_cpus=sizing.cpus, num_gpus=sizing.gpus)
    done, warnings = [], []
    for row in ds.iter_rows():
        if row["fatal"]:
            raise WorkerLoadError(row["fatal"])
        warnings += [w for w in json.loads(row["warnings"]) if w not in warnings]
        rec = ImageRecord(**json.loads(row["record"]))
        src, dst = given.get(rec.input, (rec.input, rec.output))
        rec.input, rec.output = src, (dst if rec.output else None)
        done.append(rec)
        on_progress and on_progress(rec)
    return done, warnings


def _absolute(path):
    """A local file given by a relative path, made absolute for the workers; anything else unchanged."""
    return os.path.abspath(path) if path and os.path.exists(path) else path
