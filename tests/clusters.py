"""A long-lived Dask cluster on 127.0.0.1 (`dask scheduler` + `dask worker` processes), as an
analyst with many scenes would keep one: jobs connect to it through a cluster.yaml `address:`
and find TensorFlow imported and the model loaded by the scenes before them."""

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise RuntimeError(f"{path}: the Dask scheduler did not start in {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def running_cluster(work: Path, env: dict, cwd: Path, workers: int = 1,
                    threads: int | None = None, model_units: int | None = 2) -> Iterator[Path]:
    """Start a scheduler and `workers` worker processes (each with `threads`, default all the
    cores, and `model_units` of the MODEL resource like the embedded cluster, None for none);
    wait for them; yield the cluster.yaml that points at the scheduler; stop all on exit."""
    dask_bin = str(Path(sys.executable).parent / "dask")
    sched_file = work / "scheduler.json"
    sched_file.unlink(missing_ok=True)
    threads = threads or os.cpu_count() or 1
    resources = ["--resources", f"MODEL={model_units}"] if model_units else []
    logs = [open(work / f"dask-{name}.log", "w") for name in ("scheduler", "worker")]  # noqa: SIM115
    procs = []
    try:
        procs.append(subprocess.Popen(
            [dask_bin, "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sched_file)],
            env=env, cwd=cwd, stdout=logs[0], stderr=subprocess.STDOUT))
        _wait_for(sched_file, 60)
        procs.append(subprocess.Popen(
            [dask_bin, "worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
             "--nworkers", str(workers), "--nthreads", str(threads), *resources,
             "--no-dashboard"],
            env=env, cwd=cwd, stdout=logs[1], stderr=subprocess.STDOUT))
        address = json.loads(sched_file.read_text())["address"]
        config = work / "cluster-address.yaml"
        config.write_text(f"address: {address}\n")
        _wait_for_workers(address, workers)
        yield config
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(n, timeout=120)
