"""`facecloak eval --strength` measures the preset a user would run (`protect --strength`).

No benchmark runs here: the heavy steps are replaced by stand-ins that record what they were given.
"""
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import facecloak.eval.benchmark as B
import facecloak.eval.runner as runner
import facecloak.pretrained as pretrained
from facecloak.cli import app
from facecloak.eval.benchmark import Benchmark
from facecloak.strong import PRESETS


def eval_cfg(monkeypatch, tmp_path, *args):
    seen = {}
    monkeypatch.setattr(B, "orl_benchmark", lambda *a, **k: "bench")
    monkeypatch.setattr(runner, "run_eval", lambda bench, cfg, progress=None: seen.update(cfg=cfg))
    r = CliRunner().invoke(app, ["eval", "--out", str(tmp_path / "e"), "--methods", "facecloak_strong", "--device", "cpu", "--quiet", *args])
    return r, seen.get("cfg")


def test_strength_reaches_the_config_and_steps_default_to_the_presets_own(monkeypatch, tmp_path):
    r, cfg = eval_cfg(monkeypatch, tmp_path, "--strength", "high")
    assert r.exit_code == 0, r.output
    assert cfg.strength == "high" and cfg.strong_steps is None  # the preset's own 12, not medium's 10
    r, cfg = eval_cfg(monkeypatch, tmp_path, "--strength", "high", "--steps-scale", "0.5")
    assert cfg.strong_steps == round(PRESETS["high"].max_steps * 0.5)
    r, cfg = eval_cfg(monkeypatch, tmp_path)
    assert cfg.strength == "medium"


def test_unknown_strength_is_a_usage_error(monkeypatch, tmp_path):
    r, cfg = eval_cfg(monkeypatch, tmp_path, "--strength", "extreme")
    assert r.exit_code == 2 and cfg is None
    assert "unknown strength 'extreme'" in r.output


class Built(Exception):
    pass


def test_run_eval_builds_its_cloaker_at_the_configs_strength(tmp_path, monkeypatch):
    crop = tmp_path / "a.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(crop)
    bench = Benchmark("tiny", {"p/a": crop}, {"p/a": "p"}, [("p/a", "p/a", True)], [["p/a"]])
    given = {}

    def build_cloaker(**kwargs):
        given.update(kwargs)
        raise Built

    monkeypatch.setattr(pretrained, "load_recognizer", lambda name, device="cpu": torch.nn.Identity())
    monkeypatch.setattr(pretrained, "build_cloaker", build_cloaker)
    with pytest.raises(Built):
        runner.run_eval(bench, runner.EvalConfig(out=str(tmp_path / "e"), methods=("facecloak_strong",), strength="low", device="cpu", e2e=False))
    assert given["config"].strength == "low" and given["config"].strong_steps is None
