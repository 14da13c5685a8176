"""Record for facecloak's own trained hiding network, shipped in ``weights/``."""
from __future__ import annotations

from pathlib import Path

from .registry import LocalSource, ModelRecord, UrlSource, register

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
HF_REPO = "facecloak/hiding-net"  # users' own weights: `facecloak protect --hf-repo OWNER/NAME`


def _copy(src_dir: Path, dest: Path) -> None:
    import shutil

    shutil.copyfile(next(src_dir.glob("*.safetensors")), dest)


HIDING = register(
    ModelRecord(
        name="hiding_net",
        kind="hiding",
        filename="hiding_net.safetensors",
        sha256="9d1afc807542a3995d018b33a0ffbc737df7498e2f8a09202cbf60f11e23411e",  # weights/README.md says how it was trained
        sources=(
            LocalSource(WEIGHTS_DIR / "hiding_net.safetensors"),
            UrlSource(f"https://huggingface.co/{HF_REPO}/resolve/main/hiding_net.safetensors", _copy),
        ),
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
        filename="fake_bank.safetensors",
        sha256="1a264e853070c51c51b32dd5d23efdad503855b8ab5d030aa9352488f43b1199",
        sources=(LocalSource(WEIGHTS_DIR / "fake_bank.safetensors"),),
        embedding_dim=512,
        license="derived from the DCGAN (DigiFace1M, non-commercial) and ArcFace (WebFace600K, non-commercial)",
        description="ArcFace features of generated fake faces, far (cos < 0.2) from every real face in the pool",
    )
)
