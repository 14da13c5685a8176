"""Records for facecloak's own weights, shipped inside the package, and users' weights on Hugging Face.

The wheel carries the files: pyproject.toml installs the repo's top-level ``weights/`` folder as
the package ``facecloak.weights`` (an editable install maps it the same way), and
:func:`bundled_dir` finds it with ``importlib.resources``. There is no online copy of our weights;
``--hf-repo OWNER/NAME`` is for users' own networks (:func:`hf_hiding_weights`).

To ship new weights, replace the files in ``weights/`` and update the two hashes below; nothing
else names them (tests/test_packaging.py checks the hashes against the files).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .registry import LocalSource, ModelNotAvailable, ModelRecord, register

HIDING_FILE = "hiding_net.safetensors"
BANK_FILE = "fake_bank.safetensors"
HIDING_SHA256 = "d9947ab322b74bb7fbb872e22ab965c1c97a58944941a92907c74a544b17c95c"  # weights/README.md says how it was trained
BANK_SHA256 = "25c6b9784033c42b4221250367b32db82bb8942fc7e2490192bf776aa5feddb4"


def bundled_dir() -> Path:
    """The installed ``facecloak.weights`` package folder.

    A checkout put on ``PYTHONPATH`` without being installed has no such package; the path
    returned then is where an install would put it, so the resolver reports it as absent.
    """
    try:
        return Path(str(resources.files("facecloak.weights")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "weights"


def model_version(path: str | Path) -> str | None:
    """The ``model_version`` entry of a safetensors file's header metadata, or None.

    ``save_hiding_net(..., extra={"model_version": "0.2"})`` writes it JSON-encoded (``'"0.2"'``);
    a plain string is accepted too.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        value = (f.metadata() or {}).get("model_version")
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        return value
    return str(decoded)


def describe_bundled() -> str:
    """One line for ``facecloak --version``: the shipped hiding network's model version and hash."""
    path = bundled_dir() / HIDING_FILE
    if not path.is_file():
        return f"hiding network: missing ({path}); reinstall facecloak"
    version = model_version(path)
    label = f"model {version}" if version else "no model version in its metadata"
    return f"hiding network: {label}, sha256 {HIDING_SHA256[:12]}"


def hf_hiding_weights(repo_id: str) -> Path:
    """``hiding_net.safetensors`` of the user's Hugging Face repo ``OWNER/NAME``, via the HF cache.

    Honours ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE``; every failure becomes a
    :class:`ModelNotAvailable` that says what to do.
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    where = f"--hf-repo {repo_id}"
    try:
        return Path(hf_hub_download(repo_id, HIDING_FILE))
    except LocalEntryNotFoundError as e:
        offline = "HF_HUB_OFFLINE=1 forbids downloading" if constants.HF_HUB_OFFLINE else f"downloading failed ({e})"
        raise ModelNotAvailable(
            f"{where}: {HIDING_FILE} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and {offline}. "
            f"Download it once with network access (`hf download {repo_id} {HIDING_FILE}`), "
            "or pass the file with --weights."
        ) from None
    except EntryNotFoundError:
        raise ModelNotAvailable(f"{where}: the repo has no {HIDING_FILE}; upload it there, or pass the file with --weights.") from None
    except RepositoryNotFoundError:
        raise ModelNotAvailable(f"{where}: no such Hugging Face repo (or it is private: run `hf auth login`).") from None
    except HfHubHTTPError as e:
        raise ModelNotAvailable(f"{where}: Hugging Face answered {e}; try again, or pass the file with --weights.") from None
    except ValueError as e:  # HFValidationError: not an OWNER/NAME id
        raise ModelNotAvailable(f"{where}: {e}") from None


HIDING = register(
    ModelRecord(
        name="hiding_net",
        kind="hiding",
        filename=HIDING_FILE,
        sha256=HIDING_SHA256,
        sources=(LocalSource(bundled_dir() / HIDING_FILE),),
        input_size=(256, 256),
        template="canonical256",
        mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0),
        license="Apache-2.0 weights; trained on ORL + offline colour faces (research use)",
        description="U-Net hiding network (Hanawa et al. 2024) trained by facecloak",
    )
)

FAKE_BANK = register(
    ModelRecord(
        name="fake_identity_bank",
        kind="generator",
        filename=BANK_FILE,
        sha256=BANK_SHA256,
        sources=(LocalSource(bundled_dir() / BANK_FILE),),
        embedding_dim=512,
        license="derived from the DCGAN (DigiFace1M, non-commercial) and ArcFace (WebFace600K, non-commercial)",
        description="ArcFace features of generated fake faces, far (cos < 0.2) from every real face in the pool",
    )
)
