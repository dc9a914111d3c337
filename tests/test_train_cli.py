"""python -m jobs.train / jobs.evaluate end to end on a tiny model (subprocesses)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.data.l4s import data as l4s_data

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--base-width", "4", "--depth", "2", "--batch-size", "8", "--quiet", "--threads", "1"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), **extra)
    return env


def _run(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return l4s_data.make_l4s(tmp_path_factory.mktemp("l4s"), n_train=32, n_valid=8)


def test_mirrored_trains_resumes_and_evaluates(data, tmp_path):
    out = tmp_path / "model"
    r = _run("jobs.train", "--data", str(data), "--out", str(out), "--strategy", "mirrored",
             "--replicas", "2", "--epochs", "1", *TINY)
    assert r.returncode == 0, r.stderr
    state = json.loads((out / "checkpoints/state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert (out / "bundle.json").exists()
    first = state["history"][0]

    r = _run("jobs.train", "--data", str(data), "--out", str(out), "--strategy", "mirrored",
             "--replicas", "2", "--epochs", "2", "--resume", *TINY)
    assert r.returncode == 0, r.stderr
    state = json.loads((out / "checkpoints/state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]  # started at epoch 2
    assert state["history"][0] == first
    assert state["normalization"]["mean"] == json.loads((out / "bundle.json").read_text())[
        "normalization"]["mean"]
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["metrics"]["epoch"] == state["best_epoch"]
    assert 0 < bundle["threshold"] < 1 and len(bundle["percentiles"]["values"]) == 14
    assert list((out / "logs").iterdir())

    report = tmp_path / "eval.json"
    r = _run("jobs.evaluate", "--data", str(data), "--model", str(out), "--json", str(report))
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.strip().splitlines()[-2:]
    assert "precision" in header and "F1" in header and "IoU" in header
    assert row.split()[:2] == ["ValidData", "8"]
    result = json.loads(report.read_text())
    assert result["tiles"] == 8 and set(result) >= {"precision", "recall", "f1", "iou"}
    assert result["f1"] == pytest.approx(bundle["metrics"]["f1"], abs=0.01)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _weights(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset)
                     else None)
    return out


def test_two_workers_train_together_to_identical_weights(data, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "jobs.train", "--data", str(data), "--out",
             str(tmp_path / "model"), "--strategy", "multiworker", "--epochs", "1",
             "--worker-dir", str(tmp_path / f"w{i}"), *TINY],
            cwd=ROOT, env=_env(TF_CONFIG=json.dumps(tf_config)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    w0, w1 = (_weights(tmp_path / f"w{i}" / "final.weights.h5") for i in range(2))
    assert w0.keys() == w1.keys() and len(w0) > 5
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    assert (tmp_path / "model" / "bundle.json").exists()  # the chief wrote the bundle


@pytest.mark.parametrize("tf_config", [None, "{not json", '{"cluster": {}, "task": {}}'])
def test_multiworker_without_valid_tf_config_exits_2(data, tmp_path, tf_config):
    env = _env() if tf_config is None else _env(TF_CONFIG=tf_config)
    r = _run("jobs.train", "--data", str(data), "--out", str(tmp_path / "m"), "--strategy",
             "multiworker", env=env, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "TF_CONFIG" in lines[0] and "Traceback" not in r.stderr


def test_bad_data_folder_is_one_line_exit_2(tmp_path):
    r = _run("jobs.train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m"),
             timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "nowhere" in r.stderr
