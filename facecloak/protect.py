"""Protect files and folders: the batch runner behind ``facecloak protect``.

It walks the inputs, skips what is already done, feeds photos to a ``Cloaker`` a batch at
a time, writes each output atomically, and keeps one record per image for the report.
A bad file never stops the batch and originals are only ever read.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .imageio import ImageError, LoadedImage, iter_inputs, load_image, output_path_for, save_image


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


@dataclass
class ImageRecord:
    input: str
    output: str | None
    status: str  # ok | no_face | skipped | error
    message: str = ""
    faces: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Summary:
    records: list[ImageRecord] = field(default_factory=list)
    wall: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def faces(self) -> int:
        return sum(sum(f["status"] == "protected" for f in r.faces) for r in self.records)

    @property
    def small_faces(self) -> int:
        return sum(sum(f["status"] == "too_small" for f in r.faces) for r in self.records)

    @property
    def still_recognised(self) -> int:
        return sum(any(v["still_matches"] for v in f.get("verify", {}).values()) for r in self.records for f in r.faces)

    def exit_code(self) -> int:
        """0 when every file was protected, had no face, or was skipped; 1 when any failed."""
        return 1 if self.count("error") else 0

    def to_json(self) -> dict:
        return {
            "images": len(self.records),
            "ok": self.count("ok"), "no_face": self.count("no_face"),
            "skipped": self.count("skipped"), "errors": self.count("error"),
            "faces": self.faces, "small_faces": self.small_faces,
            "still_recognised": self.still_recognised,
            "wall_seconds": round(self.wall, 3),
            "records": [dataclasses.asdict(r) for r in self.records],
        }


def plan(inputs: Iterable[str | Path], opts: ProtectOptions) -> tuple[list[tuple[Path, Path]], list[ImageRecord]]:
    """Pair each input with its output path; report missing inputs as errors, not crashes."""
    jobs, errors = [], []
    for given in inputs:
        try:
            for path, root in iter_inputs([given], opts.recursive, exclude_dir=opts.out):
                try:
                    jobs.append((path, output_path_for(path, root, opts.out, opts.suffix, opts.fmt)))
                except ImageError as e:
                    errors.append(ImageRecord(str(path), None, "error", str(e)))
        except ImageError as e:
            errors.append(ImageRecord(str(given), None, "error", str(e)))
    return jobs, errors


def run(cloaker, inputs: Iterable[str | Path], opts: ProtectOptions, on_progress: Callable[[ImageRecord], None] | None = None, on_plan: Callable[[int], None] | None = None) -> Summary:
    t0 = time.perf_counter()
    jobs, summary_records = plan(inputs, opts)
    summary = Summary(records=summary_records)
    if on_plan:
        on_plan(len(jobs))
    todo = []
    for src, dst in jobs:
        if dst.exists() and not opts.overwrite:
            rec = ImageRecord(str(src), str(dst), "skipped", "output exists (use --overwrite to redo)")
            summary.records.append(rec)
            on_progress and on_progress(rec)
        else:
            todo.append((src, dst))
    for i in range(0, len(todo), opts.batch_size):
        for rec in _run_batch(cloaker, todo[i : i + opts.batch_size], opts):
            summary.records.append(rec)
            on_progress and on_progress(rec)
    summary.wall = time.perf_counter() - t0
    return summary


def _run_batch(cloaker, batch: list[tuple[Path, Path]], opts: ProtectOptions) -> list[ImageRecord]:
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
        protected = sum(f["status"] == "protected" for f in faces)
        if not faces:
            status, msg = "no_face", "no face found; copied unchanged (metadata policy still applied)"
        elif not protected:
            status, msg = "no_face", f"{len(faces)} face(s) smaller than --min-face; copied unchanged. Lower --min-face to protect them"
        else:
            status, msg = "ok", ""
        try:
            save_image(dst, dataclasses.replace(img, rgb=res.rgb), fmt=opts.fmt, quality=opts.quality, keep_metadata=opts.keep_metadata)
        except ImageError as e:
            records.append(ImageRecord(str(src), None, "error", str(e), faces, per))
            continue
        records.append(ImageRecord(str(src), str(dst), status, msg, faces, round(per, 4)))
    return records


def write_report(summary: Summary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_json(), indent=2, default=_json_default))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))
