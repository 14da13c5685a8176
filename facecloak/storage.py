"""File-system URIs for ``protect --engine ray``: ``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``.

Each URI is opened with pyarrow's file systems (``pyarrow.fs.FileSystem.from_uri``, the layer
Ray Data reads through), with the credentials pyarrow finds in the environment. The driver lists
the photos and plans their destinations with the same planner as local paths
(:func:`facecloak.protect.plan_files`, here over pyarrow: :class:`ArrowFiles`, :func:`plan_uris`),
then drops the outputs that exist (:func:`pending_uris`). Each worker copies its batch to a local
temporary folder, runs the local per-file code on it (:func:`facecloak.protect.protect_batch`) and
uploads each output (:func:`protect_via_local_copies`), so a URI run has exactly the local semantics per file.

pyarrow comes with the ``[ray]`` extra and is imported only when a URI is used.
"""
from __future__ import annotations

import os
import posixpath
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .imageio import is_image_name
from .protect import ImageRecord, InputError, Plan, PlanError, ProtectOptions, output_paths, plan_files, protect_batch

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: File systems whose rename is atomic: an output is written beside its destination and moved
#: over it. Object stores have no rename (pyarrow's move copies), but publish an object only when
#: its upload completes, so they are written directly.
RENAMING_FILE_SYSTEMS = frozenset({"local", "hdfs"})


def is_uri(arg: str | os.PathLike) -> bool:
    """``scheme://...`` (``s3://b/k``, ``file:///tmp/x``), as opposed to a local path."""
    return bool(_SCHEME.match(str(arg)))


@dataclass(frozen=True)
class Location:
    """A file or folder: the pyarrow file system, the path inside it (``bucket/key`` on object
    stores, ``/abs/path`` locally) and the name the user knows it by (the URI), used in records."""

    fs: object  # pyarrow.fs.FileSystem
    path: str
    uri: str

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass
class UriPlan(Plan):
    """A :class:`~facecloak.protect.Plan` whose jobs are (input, output) :class:`Location` pairs;
    out: the --out folder (listed once to skip finished outputs)."""

    out: Location | None = None
    jobs: list = field(default_factory=list)


def resolve(arg: str | os.PathLike) -> Location:
    """The Location of a URI (``FileSystem.from_uri``) or of a local path (pyarrow's local file
    system, absolute path); a URI pyarrow cannot open is a PlanError (usage, exit 2)."""
    from pyarrow import fs as pafs

    arg = str(arg)
    if not is_uri(arg):
        return Location(pafs.LocalFileSystem(), _strip(os.path.abspath(arg)), arg)
    try:
        fs, path = pafs.FileSystem.from_uri(arg)
    except (OSError, ValueError, TypeError) as e:
        raise PlanError(f"{arg}: cannot open this URI ({_first_line(e)}). pyarrow opens s3://, gs://, abfs://, hdfs:// "
                        "and file:// URIs, with the credentials of this environment; or mount the storage and give a path.") from e
    return Location(fs, _strip(path), arg)


def join_uri(base: str, rel: str) -> str:
    """``base`` + ``/`` + ``rel``, keeping a URI's ``?query`` (e.g. ``?region=``) at the end:
    ``join_uri("s3://b/in?region=x", "a/1.jpg")`` -> ``s3://b/in/a/1.jpg?region=x``."""
    head, sep, query = base.partition("?") if is_uri(base) else (base, "", "")
    return f"{head.rstrip('/')}/{rel}{sep}{query}" if rel not in ("", ".") else base


def is_under(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies below it (file-system paths, compared as text)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def relative_to(path: str, root: str) -> str:
    """``path`` below ``root``; ``root`` "" (the common root of several buckets) keeps it whole."""
    return posixpath.relpath(path, root) if root else path


def list_images(infos, folder: str, recursive: bool, exclude: str | None = None) -> list[str]:
    """The photos among a folder listing (``FileInfo``-like: ``.path``, ``.is_file``), sorted, with
    the local walk's rules (:func:`facecloak.imageio.is_image_name`): image extensions only, no
    hidden file or folder below ``folder``, direct children only unless ``recursive``, nothing
    under ``exclude`` (the output folder); in the local walk's order (a folder's files, then its
    sub-folders, each by name)."""
    found = []
    for info in infos:
        if not info.is_file:
            continue
        parts = relative_to(info.path, folder).split("/")
        if (len(parts) > 1 and not recursive) or any(p.startswith(".") for p in parts[:-1]) or not is_image_name(parts[-1]):
            continue
        if exclude is not None and is_under(info.path, exclude):
            continue
        found.append(info.path)
    return sorted(found, key=lambda p: _walk_order(relative_to(p, folder)))


def destinations(files: list[str], root: str, out: str, opts: ProtectOptions) -> list[str]:
    """Each file's output path: its path relative to ``root`` under ``out``, renamed and told
    apart (or refused, PlanError) by the planner's :func:`facecloak.protect.output_paths`."""
    return output_paths(files, [relative_to(f, root) for f in files], out, posixpath.join, opts)


def plan_uris(inputs, out: str, opts: ProtectOptions) -> UriPlan:
    """:func:`facecloak.protect.plan` for URIs: the one planner (:func:`facecloak.protect.plan_files`)
    on pyarrow file systems (:class:`ArrowFiles`), after what only URIs need checked: each opens,
    --out is a folder and reachable, the inputs share one file system. Raises PlanError (exit 2);
    an input that is missing or unreadable becomes an error record, as locally."""
    dst = resolve(out)
    _check_out(dst)
    given = [resolve(g) for g in inputs]
    if any(not g.fs.equals(given[0].fs) for g in given):
        raise PlanError("the inputs are on different file systems (or buckets with different options); "
                        "protect each in its own run, with its own --out.")
    p = plan_files(ArrowFiles(given[0].fs if given else dst.fs), given, dst, opts)
    return UriPlan(jobs=p.jobs, records=p.records, out=dst)


class ArrowFiles:
    """:class:`facecloak.protect.Files` over pyarrow file systems; handles are :class:`Location`s,
    compared as text within a file system. home: the inputs' file system (an output on another
    one is never an input)."""

    def __init__(self, home) -> None:
        self.home = home

    def kind(self, p: Location) -> str:
        from pyarrow import fs as pafs

        try:
            t = p.fs.get_file_info(p.path).type
        except OSError as e:
            raise InputError(f"{p.uri}: cannot read it ({_first_line(e)}). Check the URI and your credentials.") from e
        if t == pafs.FileType.NotFound:
            raise InputError(f"{p.uri}: no such file or folder. Check the path or URI.")
        return "dir" if t == pafs.FileType.Directory else "file"

    def images(self, folder: Location, recursive: bool, exclude: Location | None) -> list[Location]:
        from pyarrow import fs as pafs

        try:
            infos = folder.fs.get_file_info(pafs.FileSelector(folder.path, recursive=recursive))
        except OSError as e:
            raise InputError(f"{folder.uri}: cannot list it ({_first_line(e)}). Check the URI and your credentials.") from e
        skip = exclude.path if exclude is not None and exclude.fs.equals(folder.fs) else None
        return [self.join(folder, relative_to(p, folder.path)) for p in list_images(infos, folder.path, recursive, skip)]

    def key(self, p: Location) -> tuple[bool, str]:
        return p.fs.equals(self.home), p.path

    def is_under(self, p: Location, folder: Location) -> bool:
        return p.fs.equals(folder.fs) and is_under(p.path, folder.path)

    def parent(self, p: Location) -> Location:
        """The folder's Location; its uri drops any ``?query`` (only its path is used, for the layout)."""
        return Location(p.fs, posixpath.dirname(p.path), posixpath.dirname(p.uri.partition("?")[0]))

    def relative(self, files: list[Location], folders: list[Location]) -> list[str]:
        root = _common([f.path for f in folders])
        return [relative_to(f.path, root) for f in files]

    def join(self, folder: Location, rel: str) -> Location:
        return Location(folder.fs, posixpath.join(folder.path, rel), join_uri(folder.uri, rel))


def pending_uris(p: UriPlan, opts: ProtectOptions) -> tuple[list[tuple[Location, Location]], list[ImageRecord]]:
    """:func:`facecloak.protect.pending` for URIs: (to do, skipped). The outputs that exist are
    found by listing --out once (``get_file_info`` on a recursive selector: one paged listing, not
    one request per photo); only finished outputs are listed there, as they appear whole."""
    from pyarrow import fs as pafs

    existing: set[str] = set()
    if not opts.overwrite and p.jobs:
        sel = pafs.FileSelector(p.out.path, recursive=True, allow_not_found=True)
        try:
            existing = {i.path for i in p.out.fs.get_file_info(sel) if i.is_file}
        except OSError as e:
            raise PlanError(f"--out {p.out.uri}: cannot list it ({_first_line(e)}). Check the URI and your credentials.") from e
    todo, skipped = [], []
    for src, dst in p.jobs:
        if dst.path in existing:
            skipped.append(ImageRecord(src.uri, dst.uri, "skipped", "output exists (use --overwrite to redo)"))
        else:
            todo.append((src, dst))
    return todo, skipped


def protect_via_local_copies(cloaker, jobs: list[tuple[Location, Location]], opts: ProtectOptions) -> list[ImageRecord]:
    """Protect one batch of (input, output) Locations with the local per-file code: download
    each input to a temporary folder, :func:`facecloak.protect.protect_batch` there, upload each
    output (:func:`upload`). Records name the URIs; a file that cannot be read or written is an
    error record naming it, and the batch goes on."""
    records: dict[int, ImageRecord] = {}
    with tempfile.TemporaryDirectory(prefix="facecloak-") as tmp:
        local: dict[str, tuple[int, Path]] = {}  # local input -> (job, local output)
        for i, (src, dst) in enumerate(jobs):
            here = Path(tmp, str(i), posixpath.basename(src.path))
            try:
                download(src, here)
            except (OSError, ValueError) as e:  # pyarrow: FileNotFoundError, PermissionError, ArrowInvalid
                records[i] = ImageRecord(src.uri, None, "error", f"{src.uri}: cannot read it ({_first_line(e)}). Check the URI and your credentials.")
                continue
            local[str(here)] = (i, Path(tmp, str(i), "out", posixpath.basename(dst.path)))
        pairs = [(Path(s), out) for s, (_, out) in local.items()]
        for rec in protect_batch(cloaker, pairs, opts):
            i, out = local[rec.input]
            src, dst = jobs[i]
            rec.message = rec.message.replace(rec.input, src.uri).replace(str(out), dst.uri)
            rec.input = src.uri
            if rec.output:
                try:
                    upload(out, dst)
                    rec.output = dst.uri
                except (OSError, ValueError) as e:
                    rec.status, rec.output = "error", None
                    rec.message = f"{dst.uri}: cannot write it ({_first_line(e)}). Check --out and your credentials."
            records[i] = rec
    return [records[i] for i in sorted(records)]


def download(src: Location, here: Path) -> None:
    """Copy a file from its file system to the local path ``here`` (folders created)."""
    here.parent.mkdir(parents=True, exist_ok=True)
    with src.fs.open_input_stream(src.path) as f:
        here.write_bytes(f.read())


def upload(local: Path, dst: Location) -> None:
    """Write a local file to ``dst`` so that no reader (and no resumed run) sees half of it.

    On a file system that renames atomically (``RENAMING_FILE_SYSTEMS``: local, HDFS) the bytes go
    to ``.NAME.tmp-XXXXXXXX`` beside the destination, then ``move`` over it (a killed run leaves at
    most that hidden temp file, which is never listed as an output or an input). Object stores
    (S3, GCS, Azure) have no atomic rename, but an object appears only when its upload
    completes, so the bytes are written to ``dst`` directly.
    """
    data = local.read_bytes()
    folder = posixpath.dirname(dst.path)
    dst.fs.create_dir(folder, recursive=True)  # object stores: nothing to create
    if dst.fs.type_name not in RENAMING_FILE_SYSTEMS:
        with dst.fs.open_output_stream(dst.path) as f:
            f.write(data)
        return
    tmp = posixpath.join(folder, f".{posixpath.basename(dst.path)[:100]}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with dst.fs.open_output_stream(tmp) as f:
            f.write(data)
        dst.fs.move(tmp, dst.path)
    except BaseException:
        try:
            dst.fs.delete_file(tmp)
        except OSError:
            pass
        raise


def _check_out(dst: Location) -> None:
    """--out must be a folder (or not exist yet), and reachable: a usage error before any work."""
    from pyarrow import fs as pafs

    try:
        info = dst.fs.get_file_info(dst.path)
    except OSError as e:
        raise PlanError(f"--out {dst.uri}: cannot reach it ({_first_line(e)}). Check the URI and your credentials.") from e
    if info.type == pafs.FileType.File:
        raise PlanError(f"--out {dst.uri} is a file; give a folder (or a bucket prefix).")


def _walk_order(rel: str) -> list:
    """Sort key of a top-down walk: at each level a folder's files (0) come before its folders (1)."""
    *dirs, name = rel.split("/")
    return [(1, d) for d in dirs] + [(0, name)]


def _common(roots: list[str]) -> str:
    """The deepest folder common to ``roots``; "" when they share none (several buckets)."""
    try:
        return posixpath.commonpath(roots)
    except ValueError:
        return ""


def _strip(path: str) -> str:
    return path.rstrip("/") or path[:1]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
