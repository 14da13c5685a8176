"""`facecloak eval --strength` measures the preset a user would run (`protect --strength`).

No benchmark runs here: the heavy steps are replaced by stand-ins that record what they were given.
"""
from typer.testing import CliRunner

import facecloak.eval.benchmark as B
import facecloak.eval.runner as runner
from facecloak.cli import app
from facecloak.strong import PRESETS
from tests.fakes import cloaker_args_of_run_eval


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


def test_run_eval_builds_its_cloaker_at_the_configs_strength(tmp_path, monkeypatch):
    config = cloaker_args_of_run_eval(tmp_path, monkeypatch, methods=("facecloak_strong",), strength="low")["config"]
    assert config.strength == "low" and config.strong_steps is None
