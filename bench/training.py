"""The training side of the bench: samples/s of jobs.train under each tf.distribute strategy."""

import json
import shutil
import sys
from pathlib import Path

from bench.procs import REPO, check, env, run_measured


def fresh(model_dir: Path) -> Path:
    """The bench's own training folder, emptied: jobs.train refuses to start over a checkpoint
    it was not told to resume, and every bench run trains from scratch."""
    shutil.rmtree(model_dir, ignore_errors=True)
    return model_dir


def train_cmd(cfg: dict, data: Path, out: Path, strategy: str) -> list[str]:
    return [sys.executable, "-m", "jobs.train", "--data", str(data), "--out", str(out),
            "--strategy", strategy, "--epochs", str(cfg["train_epochs"]),
            "--steps-per-epoch", str(cfg["train_steps"]), "--batch-size", "16",
            "--base-width", str(cfg["width"]), "--depth", str(cfg["depth"]), "--quiet"]


def last_rate(model_dir: Path) -> float:
    """Samples/s of the last epoch (the first also pays for tracing the step functions)."""
    state = json.loads((model_dir / "checkpoints" / "state.json").read_text())
    return float(state["history"][-1]["samples_per_second"])


def bench_training(cfg: dict, work: Path) -> dict:
    from simulator.patches import write_patches

    data = work / "patches"
    if not (data / "dataset.json").exists():
        write_patches(data, cfg["n_train"], cfg["n_valid"], seed=0)
    results = {}
    for name, strategy, extra in (("default", "default", []),
                                  ("mirrored --replicas 2", "mirrored", ["--replicas", "2"])):
        out = fresh(work / f"train-{strategy}")
        m = run_measured(train_cmd(cfg, data, out, strategy) + ["--seed", "0"] + extra,
                         env=env(), cwd=REPO, log=work / f"train-{strategy}.log")
        check(m, f"jobs.train --strategy {strategy}", work / f"train-{strategy}.log")
        results[name] = {"samples_per_s": last_rate(out), "wall_s": m.wall_s}
    results["multiworker (2 processes)"] = bench_multiworker(cfg, data, work)
    return results


def bench_multiworker(cfg: dict, data: Path, work: Path) -> dict:
    import socket
    import subprocess
    import time

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    workers = [f"127.0.0.1:{p}" for p in ports]
    out = fresh(work / "train-multiworker")
    t0 = time.perf_counter()
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        cmd = train_cmd(cfg, data, out, "multiworker") + ["--threads", "1"]
        if i:
            cmd += ["--worker-dir", str(fresh(work / f"multiworker-{i}"))]
        log = open(work / f"train-multiworker-{i}.log", "w")  # noqa: SIM115
        procs.append((subprocess.Popen(cmd, env={**env(), "TF_CONFIG": json.dumps(tf_config)},
                                       cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log))
    codes = [p.wait(timeout=1800) for p, _ in procs]
    for _, log in procs:
        log.close()
    if any(codes):
        raise RuntimeError(f"multiworker training failed {codes}: see {work}/train-multiworker-*")
    return {"samples_per_s": last_rate(out), "wall_s": time.perf_counter() - t0}


def training_markdown(r: dict) -> list[str]:
    """The training section of BENCHMARKS.md."""
    lines = ["", "## Training throughput (jobs.train, batch 16, last epoch)", "",
             "| strategy | samples/s | wall (s) |", "|---|---|---|"]
    for name, t in r["training"].items():
        lines.append(f"| {name} | {t['samples_per_s']:.1f} | {t['wall_s']:.1f} |")
    return lines
