"""The fake-identity bank from any generator's faces (StyleGAN by default, DCGAN as an option)."""
import torch
from typer.testing import CliRunner

from facecloak.bank import build_bank_from_paths, select_far
from facecloak.cli import app


class PixelEmbedder(torch.nn.Module):
    """A stand-in EN: the L2-normalised mean colour of the face, so cosines are easy to reason about."""

    def forward(self, x):
        return torch.nn.functional.normalize(x.mean(dim=(2, 3)), dim=1)


def test_bank_keeps_only_faces_far_from_every_real_face():
    red, green, blue = (torch.zeros(1, 3, 8, 8).index_fill_(1, torch.tensor([c]), 1.0) for c in range(3))
    fakes = torch.cat([red, green, blue])
    real = green.clone()  # a real person who looks "green"
    en = PixelEmbedder()
    feats, idx, stats = select_far(en(fakes), en(real), far_cos=0.2, info={"source": "test"})
    assert idx.tolist() == [0, 2]  # the green fake is that person's twin: dropped
    assert feats.shape == (2, 3) and stats["kept"] == 2 and stats["candidates"] == 3 and stats["source"] == "test"


def test_bank_from_files_streams_in_batches_and_matches_the_tensor_path(tmp_path, monkeypatch):
    from PIL import Image

    import facecloak.bank as bank_mod

    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 10, 10), (10, 10, 200)]
    fakes = []
    for i, c in enumerate(colours):
        fakes.append(tmp_path / f"fake{i}.png")
        Image.new("RGB", (256, 256), c).save(fakes[-1])
    real = tmp_path / "real.png"
    Image.new("RGB", (256, 256), (0, 255, 0)).save(real)
    seen = []
    embed = bank_mod.embed_paths
    monkeypatch.setattr(bank_mod, "embed_paths", lambda en, paths, batch=64: seen.append(len(paths)) or embed(en, paths, batch=2))
    feats, idx, stats = build_bank_from_paths(PixelEmbedder(), fakes, [real], far_cos=0.2)
    assert seen == [5, 1] and idx.tolist() == [0, 2, 3, 4] and stats["real_faces"] == 1
    en = PixelEmbedder()
    as_tensors = select_far(en(torch.stack([torch.tensor(c, dtype=torch.float).view(3, 1, 1).expand(3, 8, 8) / 255 for c in colours])),
                            en(torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)), far_cos=0.2)
    assert torch.allclose(feats, as_tensors[0], atol=1e-6) and as_tensors[1].tolist() == idx.tolist()


def test_the_real_pool_is_the_offline_training_split_plus_nba(tmp_path, monkeypatch):
    from PIL import Image

    import facecloak.data.crops as crops

    for sub, n in (("train/p1", 2), ("nba", 3), ("eval/p9", 4)):
        (tmp_path / sub).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / sub / f"{i}.png")
    monkeypatch.setattr(crops, "offline_crops", lambda split, device="cpu": tmp_path / split)
    monkeypatch.setattr(crops, "nba_crops", lambda device="cpu": tmp_path / "nba")
    pool = crops.real_training_pool()
    assert len(pool) == 5 and not any("eval" in str(p) for p in pool)


def test_build_bank_rejects_an_unknown_source(tmp_path):
    r = CliRunner().invoke(app, ["data", "build-bank", "--source", "biggan", "--out", str(tmp_path / "b.safetensors")])
    assert r.exit_code == 2 and "stylegan or dcgan" in r.output
