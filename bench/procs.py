"""Run a command and measure its wall time and the peak resident memory of its whole process
tree (the job, the Dask scheduler, nannies and workers), sampled every 0.1 s."""

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    output: str


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(cmd: list[str], env: dict | None = None, cwd: Path | None = None,
                 log: Path | None = None) -> Measured:
    """Run cmd to completion; its stdout and stderr go to `log` (and are returned)."""
    peak = 0
    done = threading.Event()
    log = log or Path("/dev/null")
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(ps))
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    text = log.read_text() if log.name != "null" else ""
    return Measured(rc, wall, peak, text)


def env() -> dict:
    """The environment of every job the bench runs: the repository on the path, TF quiet."""
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def check(m, what: str, log: Path) -> None:
    if m.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {m.returncode}): see {log}")
