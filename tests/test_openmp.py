import subprocess
import sys

from facecloak import openmp


def _loadavg(tmp_path, *running):
    """A fake /proc/loadavg whose running count is each of ``running`` in turn (one file per look)."""
    paths = []
    for i, r in enumerate(running):
        p = tmp_path / f"loadavg{i}"
        p.write_text(f"1.50 1.20 0.90 {r}/250 4242\n")
        paths.append(p)
    return paths


def test_others_running_reads_the_running_count(tmp_path):
    idle, busy = _loadavg(tmp_path, 1, 3)
    assert not openmp.others_running(str(idle), samples=3, pause=0)
    assert openmp.others_running(str(busy), samples=3, pause=0)


def test_a_short_lived_process_in_one_look_does_not_count_as_busy(tmp_path, monkeypatch):
    looks = iter([2, 1, 3])
    monkeypatch.setattr(openmp, "_running", lambda _: next(looks))
    assert not openmp.others_running(samples=3, pause=0)  # the minimum over the looks is 1: only us
    looks = iter([2, 2, 3])
    assert openmp.others_running(samples=3, pause=0)


def test_an_unreadable_loadavg_counts_as_busy(tmp_path):
    assert openmp.others_running(str(tmp_path / "missing"), samples=2, pause=0)
    (tmp_path / "odd").write_text("garbage\n")
    assert openmp.others_running(str(tmp_path / "odd"), samples=2, pause=0)


def test_wait_env_spins_briefly_only_when_idle():
    assert openmp.wait_env(idle=False) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert openmp.wait_env(idle=True) == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(openmp.SPIN_COUNT)}
    assert openmp.user_chose({"GOMP_SPINCOUNT": "0"}) and openmp.user_chose({"OMP_WAIT_POLICY": "ACTIVE"})
    assert not openmp.user_chose({"PATH": "/bin"})


_PROBE = """
import os, sys
from facecloak import cli, openmp
openmp.others_running = lambda: {busy}
sys.argv = ["facecloak", "protect", {args}]
try:
    cli.main()
except SystemExit:
    pass
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"), "torch" in sys.modules)
"""


def _env_after_cli(tmp_path, busy: bool, args: str, env: dict | None = None) -> list[str]:
    """The wait variables a real `facecloak protect` process set before torch loaded; the run itself
    stops at a usage error (a folder that does not exist), before any model."""
    import os

    full = {k: v for k, v in os.environ.items() if k not in openmp.USER_KEYS} | (env or {})
    out = subprocess.run([sys.executable, "-c", _PROBE.format(busy=busy, args=args)], capture_output=True, text=True, env=full, cwd=tmp_path, check=True)
    return out.stdout.splitlines()[-1].split()  # the probe's own line, after what the CLI printed


def test_protect_spins_briefly_on_an_idle_cpu_and_waits_passively_on_a_busy_one(tmp_path):
    missing = repr(str(tmp_path / "no-such-folder"))
    assert _env_after_cli(tmp_path, False, missing) == ["PASSIVE", str(openmp.SPIN_COUNT), "True"]
    assert _env_after_cli(tmp_path, True, missing) == ["PASSIVE", "None", "True"]
    # The user's own choice always wins; and Ray's actors are not told to spin.
    assert _env_after_cli(tmp_path, False, missing, {"OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "None", "True"]
    assert _env_after_cli(tmp_path, False, missing + ', "--engine", "ray"') == ["PASSIVE", "None", "True"]
