"""`facecloak train` end to end on a tiny fixture: one process, and two under torchrun (gloo)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facecloak.cli import app
from facecloak.train import losses as L

COVERS = Path(__file__).parent / "fixtures" / "zoo_arcface_sface_dcgan"


def tiny(max_steps: int = 2) -> list[str]:
    return ["--covers", str(COVERS), "--max-steps", str(max_steps), "--batch-size", "2", "--width", "4", "--loss-size", "64",
            "--n-fakes", "8", "--val-fraction", "0.25", "--quiet", "--lr", "1e-3"]


def test_losses_match_their_formulas():
    c = torch.zeros(1, 3, 4, 4)
    d = torch.full((1, 3, 4, 4), 0.5)
    assert L.rec_loss(c, d).item() == pytest.approx(0.25)
    e = torch.tensor([[1.0, 0.0]])
    f = torch.tensor([[0.6, 0.8]])
    assert L.near_loss(e, f).item() == pytest.approx(0.4)
    assert L.far_loss(e, f).item() == pytest.approx(0.6)
    terms = {"rec": torch.tensor(1.0), "perc": torch.tensor(2.0), "lpips": torch.tensor(3.0), "near": torch.tensor(4.0), "far": torch.tensor(8.0)}
    assert L.total_loss(terms, L.LossWeights()).item() == pytest.approx(1 + 2 + 3 + 0.5 + 1.0)


@pytest.mark.slow
def test_train_single_process_writes_checkpoint_log_and_preview(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *tiny(2), "--out", str(out)])
    assert r.exit_code == 0, r.output
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [x for x in log if "loss" in x and "step" in x and "val" not in x]
    assert {"rec", "perc", "lpips", "near", "far", "lr"} <= set(steps[0])
    assert any("val" in x for x in log)
    from facecloak.models.hiding import load_hiding_net

    hn = load_hiding_net(out / "best.safetensors")
    assert hn.config.width == 4
    assert list((out / "previews").glob("*.png"))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["max_steps"] == 2 and cfg["data"]["n_val"] == 1
    # resume continues from the saved step
    r = CliRunner().invoke(app, ["train", *tiny(4), "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["step"] == 4


@pytest.mark.slow
def test_checkpoint_every_saves_mid_epoch(tmp_path):
    """A long epoch on a CPU must not lose hours: --checkpoint-every validates and saves inside it."""
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *tiny(2), "--batch-size", "1", "--checkpoint-every", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    vals = [x for x in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "val" in x]
    assert (vals[0]["epoch"], vals[0]["step"]) == (0, 1)  # saved inside epoch 0, after its first step (batch 1)
    assert vals[-1]["step"] == 2
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    assert len(list((out / "previews").glob("*.png"))) >= 2


@pytest.mark.slow
def test_train_two_processes_torchrun_stay_in_sync(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "facecloak", "train", *tiny(2), "--out", str(out), "--device", "cpu"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    sums = [float((out / f"ddp_rank{r}_checksum.txt").read_text()) for r in (0, 1)]
    assert sums[0] == sums[1]  # DDP kept both replicas identical
    assert (out / "best.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_covers_from_celeba_root_and_photo_folder(tmp_path, monkeypatch):
    """A CelebA root is split by its partition file and aligned once; aligned crops pass through."""
    import shutil

    from facecloak.data.crops import covers_for_training

    monkeypatch.setenv("FACECLOAK_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    for n, f in zip(names, ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]):
        shutil.copy(COVERS / f, root / "img_align_celeba" / n)
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n000004.jpg 2\n")
    train, val = covers_for_training(root)
    assert len(list(train.glob("*.png"))) == 2 and len(list(val.glob("*.png"))) == 1
    assert covers_for_training(COVERS) == (COVERS, None)  # already 256x256 crops
