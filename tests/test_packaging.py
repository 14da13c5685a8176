"""The wheel carries the weights and works installed (not editable) from outside the repo.

Builds the sdist and the wheel once from a copy of the working tree (``python -m build``, which
builds the wheel from the sdist), plus a wheel straight from the tree, and installs the wheel into
a fresh virtual environment that borrows this interpreter's dependencies through a ``.pth`` file.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import facecloak
from facecloak.zoo import hiding
from facecloak.zoo.registry import resolve

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
SHIPPED = ("hiding_net.safetensors", "fake_bank.safetensors", "README.md", "__init__.py")
MAX_WHEEL_BYTES = 20 * 1024 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def _copy_tree(dest: Path) -> Path:
    """The files git would put in a fresh clone, plus new files not yet committed (no venvs, builds or caches)."""
    names = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("build")
    src = _copy_tree(tmp / "src")
    build = [sys.executable, "-m", "build", "--no-isolation"]
    _run(build + ["--outdir", str(tmp / "dist"), str(src)], tmp)  # sdist, then the wheel from the sdist
    _run(build + ["--wheel", "--outdir", str(tmp / "direct"), str(src)], tmp)  # the wheel from the tree
    (wheel,) = (tmp / "dist").glob("*.whl")
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    (direct,) = (tmp / "direct").glob("*.whl")
    return {"wheel": wheel, "sdist": sdist, "direct": direct, "tmp": tmp, "src": src}


def _wheel_files(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as z:
        return {n: _sha(z.read(n)) for n in z.namelist()}


def test_shipped_hashes_match_the_weights_folder():
    assert _sha((WEIGHTS / hiding.HIDING_FILE).read_bytes()) == hiding.HIDING_SHA256
    assert _sha((WEIGHTS / hiding.BANK_FILE).read_bytes()) == hiding.BANK_SHA256
    # This checkout is installed editable: the package data is the repo's own folder, not a copy.
    assert hiding.bundled_dir() == WEIGHTS
    assert resolve("hiding_net") == WEIGHTS / hiding.HIDING_FILE


def test_wheel_carries_the_weights_and_every_module(built):
    assert built["wheel"].name == f"facecloak-{facecloak.__version__}-py3-none-any.whl"
    assert built["wheel"].stat().st_size <= MAX_WHEEL_BYTES
    files = _wheel_files(built["wheel"])
    src = built["src"]  # the tree as it was copied: others may add files to the checkout meanwhile
    for name in SHIPPED:
        assert files[f"facecloak/weights/{name}"] == _sha((src / "weights" / name).read_bytes()), name
    modules = {p.relative_to(src).as_posix() for p in (src / "facecloak").rglob("*.py")}
    missing = sorted(modules - set(files))
    assert not missing, f"not in the wheel: {missing}; add new packages to [tool.setuptools] packages in pyproject.toml"
    assert not [n for n in files if n.startswith(("tests/", "weights/", "examples/"))]


def test_sdist_builds_the_same_wheel(built):
    assert _wheel_files(built["wheel"]) == _wheel_files(built["direct"])
    with tarfile.open(built["sdist"]) as t:
        members = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    assert {f"weights/{n}" for n in SHIPPED} <= members


@pytest.fixture(scope="module")
def installed(built) -> Path:
    """A fresh venv with the wheel installed normally; dependencies come from this interpreter's site-packages."""
    venv = built["tmp"] / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], built["tmp"])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], built["tmp"]).stdout.strip())
    # A plain path line: the editable install's own .pth hooks in there are not run, so only the wheel provides facecloak.
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(built["wheel"])], built["tmp"])
    return venv


def test_installed_wheel_finds_its_own_weights_offline(installed, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    probe = (
        "import json, facecloak\n"
        "from facecloak.zoo.registry import resolve\n"
        "print(json.dumps({'package': facecloak.__file__, 'hiding': str(resolve('hiding_net', download=False)),"
        " 'bank': str(resolve('fake_identity_bank', download=False))}))\n"
    )
    got = json.loads(_run([str(installed / "bin" / "python"), "-c", probe], tmp_path, env).stdout)
    site = str(installed)
    assert got["package"].startswith(site)
    assert Path(got["hiding"]).parent == Path(got["package"]).parent / "weights"
    assert got["hiding"].startswith(site) and got["bank"].startswith(site)
    assert not any(v.startswith(str(ROOT)) for v in got.values())
    out = _run([str(installed / "bin" / "facecloak"), "--version"], tmp_path, env).stdout
    assert out.splitlines()[0] == f"facecloak {facecloak.__version__}"


# ---------------------------------------------------------------- versions
def test_version_option_prints_package_and_model_version():
    from typer.testing import CliRunner

    from facecloak.cli import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0
    first, second = r.output.splitlines()[:2]
    assert first == f"facecloak {facecloak.__version__}"
    assert second.startswith("hiding network: ") and hiding.HIDING_SHA256[:12] in second


def test_model_version_comes_from_the_safetensors_metadata(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    t = {"w": np.zeros(2, np.float32)}
    for meta, want in (({"model_version": json.dumps("0.3")}, "0.3"), ({"model_version": "0.3-cpu"}, "0.3-cpu"), ({}, None)):
        save_file(t, str(tmp_path / "m.safetensors"), metadata=meta)
        assert hiding.model_version(tmp_path / "m.safetensors") == want


# ---------------------------------------------------------------- --hf-repo, offline
@pytest.fixture()
def hf_cache(tmp_path) -> tuple[Path, float]:
    """A local Hugging Face cache holding ``me/mynet`` (a tiny hiding network) and ``me/empty`` (no file)."""
    import torch

    from facecloak.models.hiding import HidingNet, HidingNetConfig, save_hiding_net

    torch.manual_seed(3)
    net = HidingNet(HidingNetConfig(width=4))
    commit = "0123456789abcdef0123456789abcdef01234567"
    for repo, with_file in (("mynet", True), ("empty", False)):
        root = tmp_path / "hub" / f"models--me--{repo}"
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(commit)
        snap = root / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").write_text("{}")
        if with_file:
            save_hiding_net(net, snap / hiding.HIDING_FILE)
    checksum = float(sum(p.double().sum() for p in net.state_dict().values()))
    return tmp_path / "hub", checksum


def _offline_env(hub: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub)}


def test_hf_repo_loads_the_users_network_from_the_offline_cache(hf_cache, tmp_path):
    hub, checksum = hf_cache
    probe = (
        "import json\n"
        "from facecloak.pretrained import load_default_hiding_net\n"
        "from facecloak.zoo.registry import ModelNotAvailable\n"
        "net = load_default_hiding_net(hf_repo='me/mynet')\n"
        "try:\n"
        "    load_default_hiding_net(hf_repo='me/absent')\n"
        "    error = None\n"
        "except ModelNotAvailable as e:\n"
        "    error = str(e)\n"
        "print(json.dumps([net.config.width, float(sum(p.double().sum() for p in net.state_dict().values())), error]))\n"
    )
    width, got, error = json.loads(_run([sys.executable, "-c", probe], tmp_path, _offline_env(hub)).stdout)
    assert width == 4 and got == pytest.approx(checksum, rel=1e-9)
    assert error.startswith("--hf-repo me/absent: hiding_net.safetensors is not in the local Hugging Face cache")
    assert str(hub) in error and "HF_HUB_OFFLINE=1 forbids downloading" in error


def test_hf_repo_missing_file_is_a_clear_model_error(hf_cache, tmp_path):
    hub, _ = hf_cache
    cmd = [sys.executable, "-m", "facecloak", "protect", str(ROOT / "examples" / "coffee.jpg"), "--out", str(tmp_path / "o"), "--hf-repo", "me/empty"]
    r = subprocess.run(cmd, cwd=tmp_path, env={**_offline_env(hub), "COLUMNS": "300"}, capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    msg = " ".join(r.stderr.split())
    assert "--hf-repo me/empty: hiding_net.safetensors is not in the local Hugging Face cache" in msg
    assert "HF_HUB_OFFLINE=1 forbids downloading" in msg and "--weights" in msg
    assert not (tmp_path / "o").exists()


def test_ci_runs_the_readmes_test_command_and_stops_if_it_fails():
    """CI runs the README's test command verbatim, and a failed install stops CI (under ``set -e``
    the first command of an ``&&`` list may fail without stopping the script)."""
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    (command,) = [b for b in blocks if "pytest" in b and "\n" not in b]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"{command} || exit" in ci
