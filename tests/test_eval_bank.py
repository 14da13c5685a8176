"""`facecloak eval --bank FILE` evaluates with the user's own fake-identity bank (issue 12, case 7).

A bad bank is refused with exit 3 and one line naming the file, before the benchmark is prepared;
a good one travels through ``EvalConfig.bank`` to ``build_cloaker``. No benchmark runs here: the
heavy steps are replaced by stand-ins that record what they were given.
"""
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import facecloak.eval.benchmark as B
import facecloak.eval.runner as runner
from facecloak.cli import app
from tests.fakes import cloaker_args_of_run_eval


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture
def no_benchmark(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the benchmark was prepared before --bank was checked")

    for name in ("orl_benchmark", "lfw_benchmark", "folder_benchmark"):
        monkeypatch.setattr(B, name, refuse)


def write_bank(path, content):
    if content == "garbage":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    elif content != "missing":
        save_file({"wrong_key": {"feats": torch.randn(4, 512)}, "wrong_shape": {"features": torch.randn(4, 128)}}[content], str(path))


@pytest.mark.parametrize("content", ["missing", "garbage", "wrong_key", "wrong_shape"])
def test_unusable_bank_exits_3_before_any_work(tmp_path, no_benchmark, content):
    bank = tmp_path / "my_bank.safetensors"
    write_bank(bank, content)
    r = run("eval", "--bank", bank, "--out", tmp_path / "e", "--methods", "facecloak_fast", "--device", "cpu", "--quiet")
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert "--bank" in lines[0] and "my_bank.safetensors" in lines[0]
    assert not (tmp_path / "e").exists()


def test_the_bank_option_reaches_the_eval_config(tmp_path, monkeypatch):
    bank = tmp_path / "mine.safetensors"
    save_file({"features": torch.nn.functional.normalize(torch.randn(3, 512), dim=1)}, str(bank))
    seen = {}
    monkeypatch.setattr(B, "orl_benchmark", lambda *a, **k: "bench")
    monkeypatch.setattr(runner, "run_eval", lambda bench, cfg, progress=None: seen.update(bench=bench, cfg=cfg))
    r = run("eval", "--bank", bank, "--out", tmp_path / "e", "--methods", "facecloak_fast", "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    assert seen["bench"] == "bench" and seen["cfg"].bank == str(bank)
    r = run("eval", "--out", tmp_path / "e", "--methods", "facecloak_fast", "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    assert seen["cfg"].bank is None  # no --bank: the shipped one


@pytest.mark.parametrize("bank", [None, "/somewhere/mine.safetensors"])
def test_run_eval_builds_its_cloaker_with_the_configs_bank(tmp_path, monkeypatch, bank):
    assert cloaker_args_of_run_eval(tmp_path, monkeypatch, methods=("facecloak_fast",), bank=bank)["bank"] == bank
