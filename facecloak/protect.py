"""Protect files and folders: the batch runner behind ``facecloak protect``.

It walks the inputs, skips what is already done, feeds photos to a ``Cloaker`` a batch at
a time, writes each output atomically, and keeps one record per image for the report.
A bad file never stops the batch and originals are only ever read.
"""
from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Iterable, Protocol

import numpy as np

from .imageio import ImageError, LoadedImage, is_inside, iter_inputs, load_image, output_name, save_image


@dataclass
class ProtectOptions:
    out: Path
    recursive: bool = False
    fmt: str | None = None
    quality: int = 95
    suffix: str = ""
    overwrite: bool = False
    keep_metadata: bool = False
    aligned: bool = False
    batch_size: int = 4  # photos decoded and run together
    max_pixels: int | None = 100_000_000


#: Why a detected face was left unchanged, as the report and summary say it.
UNPROTECTED_REASONS = {
    "too_small": "below --min-face",
    "file_failed": "in a file that failed",
}
#: Modes known to leave faces matchable (README, "What --verify says": fast mode left all four
#: example faces matching their originals); the summary says so when --verify was off.
MATCHABLE_MODES = {
    "fast": "fast mode often leaves faces matchable by face recognition (README: \"What --verify says\"); "
            "use --strength high, or --mode strong --verify, when it matters",
}


def stronger_advice(mode: str, strength: str, retried: bool = True) -> str:
    """What to try when --verify still matches faces: the next step up the ladder
    fast < fast --strength high < strong (< its --verify retry) (README, "Fast or strong?").
    In strong mode --verify has already optimised such faces again with its strongest setting
    (``retried``), so there is nothing stronger to suggest."""
    if mode == "fast":
        return "try --mode strong" if strength == "high" else "try --strength high, or --mode strong"
    if not retried:
        return "try --strength high" if strength != "high" else "drop --no-retry, so that --verify protects these faces again with its retry"
    return "even strong mode's --verify retry was not enough for these faces (README, \"What --verify says\"); do not publish them as protected"


@dataclass
class ImageRecord:
    input: str
    output: str | None
    status: str  # ok | faces_unprotected | no_face | skipped | error
    message: str = ""
    faces: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Summary:
    """Records of a run, and the per-run counts the CLI prints and the report holds.

    mode, strength, verified, strict: the run's options, for the advice, the caveat and the exit code; warnings:
    things the user must know that concern no single file (e.g. a verifier that is missing);
    engine: which engine ran it (local | ray).
    """

    records: list[ImageRecord] = field(default_factory=list)
    wall: float = 0.0
    mode: str = "fast"
    strength: str = "medium"
    verified: bool = False
    strict: bool = False
    retry: bool = True  # strong mode + --verify: still-matched faces are optimised again (CloakConfig.verify_retry)
    warnings: list[str] = field(default_factory=list)
    engine: str = "local"

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def faces_found(self) -> int:
        return sum(len(r.faces) for r in self.records)

    @property
    def faces(self) -> int:
        """Faces protected in a written output."""
        return sum(sum(f["status"] == "protected" for f in r.faces) for r in self.records if r.status != "error")

    @property
    def small_faces(self) -> int:
        return sum(sum(f["status"] == "too_small" for f in r.faces) for r in self.records if r.status != "error")

    def unprotected(self) -> dict[str, int]:
        """Faces found but not protected, by reason (keys of ``UNPROTECTED_REASONS``); zeros left out."""
        failed = sum(len(r.faces) for r in self.records if r.status == "error")
        return {k: v for k, v in (("too_small", self.small_faces), ("file_failed", failed)) if v}

    @property
    def still_recognised(self) -> int:
        return sum(any(v["still_matches"] for v in f.get("verify", {}).values()) for r in self.records for f in r.faces)

    @property
    def retried(self) -> int:
        """Faces strong mode optimised a second time because a black box still matched them."""
        return sum(bool(f.get("retried")) for r in self.records for f in r.faces)

    @property
    def caveat(self) -> str | None:
        return None if self.verified else MATCHABLE_MODES.get(self.mode)

    def exit_code(self) -> int:
        """1 when a file failed, or with ``strict`` when a photo kept an unprotected face; else 0."""
        return 1 if self.count("error") or (self.strict and self.count("faces_unprotected")) else 0

    def to_json(self) -> dict:
        return {
            "images": len(self.records),
            "ok": self.count("ok"), "faces_unprotected": self.count("faces_unprotected"), "no_face": self.count("no_face"),
            "skipped": self.count("skipped"), "errors": self.count("error"),
            "faces_found": self.faces_found, "faces_protected": self.faces,
            "faces_left_unprotected": sum(self.unprotected().values()), "unprotected_reasons": self.unprotected(),
            "faces": self.faces, "small_faces": self.small_faces,
            "still_recognised": self.still_recognised, "retried": self.retried,
            "mode": self.mode, "strength": self.strength, "verify": self.verified, "strict": self.strict,
            "caveat": self.caveat, "warnings": self.warnings,
            "engine": self.engine, "wall_seconds": round(self.wall, 3),
            "records": [dataclasses.asdict(r) for r in self.records],
        }


class PlanError(ValueError):
    """The inputs and options cannot be planned safely: a usage error (exit code 2)."""


class InputError(Exception):
    """One input that cannot be read (missing, unreadable): an error record naming it; the rest is planned."""


@dataclass
class Plan:
    """Every destination, decided before any photo is read.

    jobs: (input, output) pairs, one output per input and no two alike (``Path`` pairs for local
    paths); records: inputs that are already settled (missing files as errors, earlier outputs
    listed as inputs as skipped).
    """

    jobs: list[tuple[Path, Path]] = field(default_factory=list)
    records: list[ImageRecord] = field(default_factory=list)


class Files(Protocol):
    """The file system the planner (:func:`plan_files`) works on: :class:`LocalFiles` for paths,
    ``facecloak.storage.ArrowFiles`` for URIs. Its handles (``Path``, ``storage.Location``) print
    as the name the user gave and have a ``.name`` (the file name)."""

    def kind(self, p) -> str:
        """"dir" or "file"; raises InputError when ``p`` is missing or unreadable."""

    def images(self, folder, recursive: bool, exclude) -> list:
        """The photos in ``folder`` in walk order (:func:`facecloak.imageio.is_image_name`), sub-folders
        only when ``recursive``, nothing under ``exclude`` (None: nothing left out); raises InputError."""

    def key(self, p) -> Hashable:
        """Equal for two handles of the same file."""

    def is_under(self, p, folder) -> bool:
        """``p`` is ``folder`` or lies below it."""

    def parent(self, p):
        """The folder ``p`` is in."""

    def relative(self, files: list, folders: list) -> list[str]:
        """Each file's '/'-separated path below the deepest folder common to ``folders``."""

    def join(self, folder, rel: str):
        """The handle of ``rel`` ('/'-separated) below ``folder``."""


class LocalFiles:
    """:class:`Files` over local paths (``Path``); links are resolved to tell files apart."""

    def kind(self, p: Path) -> str:
        if p.is_dir():
            return "dir"
        if p.exists():
            return "file"
        raise InputError(f"{p}: no such file or folder. Check the path.")

    def images(self, folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
        return [p for p, _ in iter_inputs([folder], recursive, exclude_dir=exclude)]

    def key(self, p: Path) -> str:
        return os.path.normcase(str(p.resolve()))

    def is_under(self, p: Path, folder: Path) -> bool:
        return is_inside(p, folder)

    def parent(self, p: Path) -> Path:
        return p.parent

    def relative(self, files: list[Path], folders: list[Path]) -> list[str]:
        root = _common_folder(folders)
        return [Path(os.path.abspath(f)).relative_to(root).as_posix() for f in files]

    def join(self, folder: Path, rel: str) -> Path:
        return Path(folder) / rel


def check_suffix(suffix: str) -> None:
    """A suffix is part of a file name: no folder separators, not '.'/'..', no NUL."""
    if any(c in suffix for c in ("/", "\\", "\0")) or suffix in (".", ".."):
        raise PlanError(f"--suffix {suffix!r} must be part of a file name (no '/' or '\\'), e.g. --suffix _cloaked")


def common_root(inputs: list[Path]) -> Path:
    """The folder all outputs are placed relative to: the deepest common folder of the inputs,
    where a folder input counts as itself and a file as its parent folder (so one folder maps onto
    --out itself, as before, and files from several folders keep their relative paths)."""
    return _common_folder([p if p.is_dir() else p.parent for p in inputs])


def _common_folder(folders: list[Path]) -> Path:
    return Path(os.path.commonpath([os.path.abspath(f) for f in folders])) if folders else Path.cwd()


def plan(inputs: Iterable[str | Path], opts: ProtectOptions) -> Plan:
    """:func:`plan_files` for local paths (``Path`` jobs); raises ``PlanError``."""
    return plan_files(LocalFiles(), [Path(g) for g in inputs], Path(opts.out), opts)


def plan_files(fs: Files, inputs: list, out, opts: ProtectOptions) -> Plan:
    """Pair each input with its own output on ``fs``, or raise ``PlanError`` before anything is
    written. The one planner of local paths (:func:`plan`) and URIs (``storage.plan_uris``).

    Rules: outputs mirror each input's path relative to the inputs' deepest common folder (a
    file counts as its folder); the same file given twice is one job; ``--out`` equal to or
    containing an input needs a ``--suffix`` (then files inside --out whose name ends with it are
    earlier outputs, not inputs); two inputs that would share an output are told apart by their
    source extension (``b.gif`` -> ``b_gif.png`` beside ``b.png``) or refused; no output may be an
    input of the run. A missing or unreadable input is an error record, and the rest is planned.
    """
    check_suffix(opts.suffix)
    result = Plan()
    present: list[tuple[object, str]] = []  # (input, "dir" | "file")
    for g in inputs:
        try:
            present.append((g, fs.kind(g)))
        except InputError as e:
            result.records.append(ImageRecord(str(g), None, "error", str(e)))
    overlapping = [g for g, _ in present if fs.is_under(g, out)]
    if overlapping and not opts.suffix:
        raise PlanError(
            f"--out {out} is or contains an input ({overlapping[0]}): protected copies would replace or mix with "
            "the originals, and re-runs would read them back as inputs. Choose an --out folder outside the inputs "
            "(if that input is an earlier output, leave --out out of the list), or add --suffix (e.g. --suffix "
            "_cloaked) to write beside them."
        )
    # Folders walked for inputs skip --out, unless --out is one of them (then the suffix tells outputs apart).
    exclude = None if any(k == "dir" and fs.is_under(g, out) for g, k in present) else out
    seen: set = set()
    files: dict = {}  # key -> input, in walk order
    for g, k in present:
        try:
            found = fs.images(g, opts.recursive, exclude) if k == "dir" else [g]
        except InputError as e:
            result.records.append(ImageRecord(str(g), None, "error", str(e)))
            continue
        for path in found:
            if (key := fs.key(path)) in seen:
                continue
            seen.add(key)
            if opts.suffix and fs.is_under(path, out) and os.path.splitext(path.name)[0].endswith(opts.suffix):
                if k == "file":  # listed by name: say why it is left out
                    result.records.append(ImageRecord(str(path), None, "skipped", f"{path}: inside --out and named like an output (…{opts.suffix}); not re-read as an input"))
                continue
            files[key] = path
    srcs = list(files.values())
    dests = output_paths(srcs, fs.relative(srcs, [g if k == "dir" else fs.parent(g) for g, k in present]), out, fs.join, opts)
    for src, dst in zip(srcs, dests):
        if fs.key(dst) in files:
            raise PlanError(f"the output for {src} would be {dst}, which is an input of this run. Choose another --out or --suffix.")
    result.jobs = list(zip(srcs, dests))
    return result


def output_paths(files: list, rels: list[str], out, join: Callable, opts: ProtectOptions) -> list:
    """Each file's output ``join(out, rel')``: ``rel``, its '/'-separated path below the inputs'
    common folder, renamed by :func:`facecloak.imageio.output_name` (suffix, format). Files that
    would share an output and changed extension get their source extension in the name
    (``a.jpg`` -> ``a_jpg.png`` beside ``a.png``); any still alike are a PlanError naming both."""
    dests = [posixpath.join(posixpath.dirname(r), output_name(posixpath.basename(r), opts.suffix, opts.fmt)) for r in rels]
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(dests):
        groups.setdefault(os.path.normcase(d), []).append(i)
    for idx in (g for g in groups.values() if len(g) > 1):
        for i in idx:
            src_ext = posixpath.splitext(rels[i])[1].lower().lstrip(".")
            stem, ext = posixpath.splitext(dests[i])
            if src_ext and src_ext != ext.lower().lstrip("."):
                dests[i] = f"{stem}_{src_ext}{ext}"
    final: dict[str, int] = {}
    for i, d in enumerate(dests):
        j = final.setdefault(os.path.normcase(d), i)
        if j != i:
            raise PlanError(f"{files[j]} and {files[i]} would both be written to {join(out, d)}. Protect them in separate runs "
                            "with different --out folders, or rename one.")
    return [join(out, d) for d in dests]


def pending(p: Plan, opts: ProtectOptions) -> tuple[list[tuple[Path, Path]], list[ImageRecord]]:
    """Split planned jobs into (to do, skipped): an output that exists is skipped unless
    ``opts.overwrite``. Only finished outputs count, because every output is written by atomic
    rename; a killed run's temporary files (``.NAME.tmp-*``) are not outputs, so it resumes."""
    todo, skipped = [], []
    for src, dst in p.jobs:
        if dst.exists() and not opts.overwrite:
            skipped.append(ImageRecord(str(src), str(dst), "skipped", "output exists (use --overwrite to redo)"))
        else:
            todo.append((src, dst))
    return todo, skipped


def run(cloaker, inputs: Iterable[str | Path] | Plan, opts: ProtectOptions, on_progress: Callable[[ImageRecord], None] | None = None, on_plan: Callable[[int], None] | None = None) -> Summary:
    """Protect every planned job in this process (``--engine local``). ``inputs`` is a :class:`Plan`
    or paths to :func:`plan` first (which raises ``PlanError`` before any work)."""
    t0 = time.perf_counter()
    p = inputs if isinstance(inputs, Plan) else plan(inputs, opts)
    summary = Summary(records=list(p.records))
    if on_plan:
        on_plan(len(p.jobs))
    todo, skipped = pending(p, opts)
    for rec in skipped:
        summary.records.append(rec)
        on_progress and on_progress(rec)
    for i in range(0, len(todo), opts.batch_size):
        for rec in protect_batch(cloaker, todo[i : i + opts.batch_size], opts):
            summary.records.append(rec)
            on_progress and on_progress(rec)
    summary.wall = time.perf_counter() - t0
    return summary


def protect_batch(cloaker, batch: list[tuple[Path, Path]], opts: ProtectOptions) -> list[ImageRecord]:
    """Read, protect and atomically write one batch of (input, output) pairs; one record each.

    The per-file work of every engine: the local loop and each Ray actor call this, so both
    have the same semantics (bad files become error records, the batch goes on)."""
    t0 = time.perf_counter()
    loaded: list[tuple[Path, Path, LoadedImage]] = []
    records: list[ImageRecord] = []
    for src, dst in batch:
        try:
            img = load_image(src, max_pixels=opts.max_pixels)
            if opts.aligned and img.rgb.shape[:2] != (256, 256):
                raise ImageError(src, f"--aligned expects 256x256 crops, this is {img.size[0]}x{img.size[1]}", "Drop --aligned to detect faces in it.")
            loaded.append((src, dst, img))
        except ImageError as e:
            records.append(ImageRecord(str(src), None, "error", str(e)))
    if not loaded:
        return records
    try:
        if opts.aligned:
            results = cloaker.protect_crops([img.rgb for _, _, img in loaded])
        else:
            results = cloaker.protect_images([img.rgb for _, _, img in loaded])
    except Exception as e:  # noqa: BLE001 - a model failure on one batch must not lose the others
        return records + [ImageRecord(str(s), None, "error", f"{s}: processing failed: {type(e).__name__}: {e}") for s, _, _ in loaded]
    per = (time.perf_counter() - t0) / len(loaded)
    for (src, dst, img), res in zip(loaded, results):
        faces = [dataclasses.asdict(f) for f in res.faces]
        status, msg = image_status(faces, getattr(getattr(cloaker, "cfg", None), "min_face", None))
        try:
            save_image(dst, dataclasses.replace(img, rgb=res.rgb), fmt=opts.fmt, quality=opts.quality, keep_metadata=opts.keep_metadata)
        except ImageError as e:
            records.append(ImageRecord(str(src), None, "error", str(e), faces, per))
            continue
        records.append(ImageRecord(str(src), str(dst), status, msg, faces, round(per, 4)))
    return records


def image_status(faces: list[dict], min_face: float | None = None) -> tuple[str, str]:
    """(status, message) of a written photo: ``ok`` when every face found was protected,
    ``faces_unprotected`` when any was left unchanged, ``no_face`` when none was found."""
    small = sum(f["status"] == "too_small" for f in faces)
    if not faces:
        return "no_face", "no face found; copied unchanged (metadata policy still applied)"
    if small:
        limit = f" (eye distance under {min_face:g} px)" if min_face else ""
        return "faces_unprotected", (f"{small} of {len(faces)} face(s) below --min-face{limit} left UNCHANGED and still "
                                     "recognisable; lower --min-face to protect them")
    return "ok", ""


def write_report(summary: Summary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_json(), indent=2, default=_json_default))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))
