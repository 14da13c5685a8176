"""Assemble ready-to-use objects from the model zoo: the default ``Cloaker`` and verifiers."""
from __future__ import annotations

from pathlib import Path

import torch

#: Cosine thresholds at a false-accept rate of 1e-3, fitted on training data only: every pair of
#: different identities among the labelled offline training faces (ORL s1-s30 + single colour
#: portraits, 309 faces) and 320 DCGAN fakes: 196,156 impostor pairs; no evaluation face is used.
#: Rounded up to 3 decimals. Refit with `python -m facecloak.eval.impostors`
#: (facecloak.eval.impostors.fit_verify_thresholds); `facecloak eval` reports the same numbers
#: as thresholds.<recognizer>.far_1e-3.
VERIFY_THRESHOLDS = {"facenet_casia": 0.652, "sface": 0.475, "dlib_resnet": 0.941, "arcface_mbf": 0.363}


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when torch sees it, else CPU; asking for CUDA without it is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def load_fake_bank(path: str | Path | None = None) -> torch.Tensor:
    """The shipped bank (sha256-checked), or a user's own ``--bank`` file (checked for shape)."""
    from safetensors.torch import load_file

    from .zoo.registry import resolve

    if path is not None:
        from .bank import load_user_bank

        return load_user_bank(path)
    return load_file(str(resolve("fake_identity_bank")))["features"].float()


def load_default_hiding_net(weights: str | Path | None = None, hf_repo: str | None = None, device="cpu"):
    from .models.hiding import load_hiding_net
    from .zoo.registry import resolve

    if hf_repo:
        from .zoo.hiding import hf_hiding_weights

        weights = hf_hiding_weights(hf_repo)
    return load_hiding_net(resolve("hiding_net", path=weights), device)


def load_recognizer(name: str, device="cpu"):
    """Frozen recognizer by registry name (canonical 256 [0,1] RGB in, unit embeddings out)."""
    if name == "arcface_mbf":
        from .zoo.arcface import load_arcface

        return load_arcface(device=device)
    if name == "facenet_casia":
        from .zoo.facenet import load_facenet

        return load_facenet(device=device)
    if name == "sface":
        from .zoo.sface import load_sface

        return load_sface()
    if name == "dlib_resnet":
        from .zoo.dlib_resnet import load_dlib

        return load_dlib()
    raise KeyError(f"unknown recognizer {name!r}")


BLACK_BOXES = ("facenet_casia", "sface", "dlib_resnet")


def load_verifiers(device="cpu", names=BLACK_BOXES, missing: dict | None = None) -> dict:
    """Recognizers that play no part in making the cloak, with their match thresholds.

    One whose runtime is not installed (dlib is an optional extra) is left out, and named in
    ``missing`` (name -> reason) so the caller can say so."""
    out = {}
    for n in names:
        try:
            out[n] = (load_recognizer(n, device), VERIFY_THRESHOLDS[n])
        except ImportError as e:
            if missing is not None:
                missing[n] = f"{e} (install facecloak[eval])"
    return out


def build_cloaker(weights=None, hf_repo=None, device="auto", config=None, verify=False, bank=None, detector_threshold=0.9):
    from .cloak import CloakConfig, Cloaker
    from .detect import FaceDetector
    from .zoo.arcface import load_arcface

    dev = resolve_device(device)
    hn = load_default_hiding_net(weights, hf_repo, dev)
    en = load_arcface(device=dev)
    feats = load_fake_bank(bank)
    missing: dict[str, str] = {}
    verifiers = load_verifiers(dev, missing=missing) if verify else None
    # The detector must find every face --min-face asks to protect, however large the photo.
    min_eye = config.min_face if config is not None else CloakConfig().min_face
    detector = FaceDetector(str(dev), threshold=detector_threshold, min_eye=min_eye)
    cloaker = Cloaker(hn, en, feats, detector, config, verifiers, device=dev)
    cloaker.unavailable_verifiers = missing  # --verify must say what it could not check
    return cloaker
