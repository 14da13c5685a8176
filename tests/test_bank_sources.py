"""The fake-identity bank from any generator's faces (StyleGAN by default, DCGAN as an option)."""
import torch
from typer.testing import CliRunner

from facecloak.bank import build_bank_from_faces
from facecloak.cli import app


class PixelEmbedder(torch.nn.Module):
    """A stand-in EN: the L2-normalised mean colour of the face, so cosines are easy to reason about."""

    def forward(self, x):
        return torch.nn.functional.normalize(x.mean(dim=(2, 3)), dim=1)


def test_bank_keeps_only_faces_far_from_every_real_face():
    red, green, blue = (torch.zeros(1, 3, 8, 8).index_fill_(1, torch.tensor([c]), 1.0) for c in range(3))
    fakes = torch.cat([red, green, blue])
    real = green.clone()  # a real person who looks "green"
    feats, idx, stats = build_bank_from_faces(PixelEmbedder(), fakes, real, far_cos=0.2, info={"source": "test"})
    assert idx.tolist() == [0, 2]  # the green fake is that person's twin: dropped
    assert feats.shape == (2, 3) and stats["kept"] == 2 and stats["candidates"] == 3 and stats["source"] == "test"


def test_build_bank_rejects_an_unknown_source(tmp_path):
    r = CliRunner().invoke(app, ["data", "build-bank", "--source", "biggan", "--out", str(tmp_path / "b.safetensors")])
    assert r.exit_code == 2 and "stylegan or dcgan" in r.output
