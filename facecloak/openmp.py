"""How the CPU's OpenMP threads wait between parallel regions, set before torch loads (libgomp
reads its environment once, when it is loaded).

Strong mode runs thousands of small operations per face (MobileFaceNet's depthwise convolutions,
forward and backward), each a parallel region. Between two of them a waiting thread either sleeps
(``OMP_WAIT_POLICY=PASSIVE``: the OS wakes it for the next region) or spins. On a shared CPU a
spinning thread burns the core another process needs: with a busy process beside it,
``--mode strong --strength high`` took 2.8–5.8 s per face with a short spin against 2.0–2.3 s
waiting passively. On an idle CPU, sleeping costs a wake-up per region: a short spin
(``GOMP_SPINCOUNT=30000`` iterations, tens of µs) took `high` from 1.63–1.68 to 1.18–1.32 s per
face, whole command (``benchmarks/results/bench_strong_cpu_spin.json``). So:

* threads wait passively, unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``;
* ``facecloak protect`` adds the short spin when no other process is running as it starts.
"""
from __future__ import annotations

import time
from collections.abc import MutableMapping

SPIN_COUNT = 30000
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def others_running(loadavg: str = "/proc/loadavg", samples: int = 5, pause: float = 0.01) -> bool:
    """True when another process was runnable in every one of ``samples`` looks (``pause`` s apart)
    at the kernel's running-task count, /proc/loadavg's fourth field "running/total" (the reader
    itself is one). A busy process is seen every time; a short-lived one (a shell's ``cat``) is
    not, since min over the looks ignores it. Unknown (no such file) counts as busy."""
    counts = []
    try:
        for i in range(samples):
            if i:
                time.sleep(pause)
            counts.append(_running(loadavg))
    except (OSError, ValueError, IndexError):
        return True
    return min(counts) > 1


def _running(loadavg: str) -> int:
    with open(loadavg) as f:
        return int(f.read().split()[3].split("/")[0])


def user_chose(environ: MutableMapping[str, str]) -> bool:
    """Whether the user set how OpenMP threads wait (their setting always wins)."""
    return any(k in environ for k in USER_KEYS)


def wait_env(idle: bool) -> dict[str, str]:
    """The variables to set when the user chose nothing: passive waiting, plus a short spin on an
    idle CPU."""
    return {"OMP_WAIT_POLICY": "PASSIVE", **({"GOMP_SPINCOUNT": str(SPIN_COUNT)} if idle else {})}
