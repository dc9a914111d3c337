"""Issue 20, options: one set of validators (jobs.cli) for every job, so that a job refuses what
its cousin refuses, each refusal one line naming the option, exit status 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import evaluate, infer

ROOT = Path(__file__).resolve().parents[1]
BAD_THRESHOLDS = ["2", "nan", "inf", "0", "1", "-0.5", "abc"]


def _exit(call) -> int:
    try:
        return call()
    except SystemExit as exc:
        return int(exc.code or 0)


def _line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith(f"python -m {prog}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
def test_evaluate_refuses_every_threshold_that_infer_refuses(tmp_path, capsys, value):
    code = _exit(lambda: infer.parse_args(["s.tif", "--model", "m", "--out", "o",
                                           f"--threshold={value}"]))
    assert code == 2
    assert "--threshold" in _line(capsys.readouterr().err, "jobs.infer")

    code = _exit(lambda: evaluate.main(["--data", str(tmp_path), "--model", str(tmp_path),
                                        f"--threshold={value}"]))
    assert code == 2
    assert "--threshold" in _line(capsys.readouterr().err, "jobs.evaluate")


@pytest.mark.parametrize("value", ["0", "-3", "1.5"])
def test_evaluate_refuses_a_batch_size_below_one(tmp_path, capsys, value):
    code = _exit(lambda: evaluate.main(["--data", str(tmp_path), "--model", str(tmp_path),
                                        f"--batch-size={value}"]))
    assert code == 2
    assert "--batch-size" in _line(capsys.readouterr().err, "jobs.evaluate")


def _train(*args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"},
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jobs.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("option", ["--epochs", "--batch-size"])
def test_train_refuses_zero_epochs_and_an_empty_batch(tmp_path, option):
    from tests.data.l4s import data as l4s_data

    data = l4s_data.make_l4s(tmp_path / "data", n_train=8, n_valid=2)
    out = tmp_path / "model"
    args = {"--epochs": "1", "--batch-size": "4", option: "0"}
    r = _train("--data", str(data), "--out", str(out), "--base-width", "2", "--depth", "1",
               "--quiet", *[a for kv in args.items() for a in kv])
    assert r.returncode == 2, r.stderr[-3000:]
    line = _line(r.stderr, "jobs.train")
    assert f"argument {option}: 0 is less than 1" in line
    assert not out.exists()  # no bundle of an untrained model


@pytest.mark.parametrize("argv", [
    ["--lr", "nan"], ["--lr", "0"], ["--val-fraction", "1.5"], ["--dropout", "-0.1"],
    ["--seed", "-1"], ["--depth", "0"], ["--threads", "0"], ["--replicas", "0"],
])
def test_train_refuses_other_out_of_range_options_before_tensorflow(tmp_path, capsys, argv):
    from jobs import train

    code = _exit(lambda: train.main(["--data", str(tmp_path), "--out", str(tmp_path / "m"),
                                     *argv]))
    assert code == 2
    assert argv[0] in _line(capsys.readouterr().err, "jobs.train")
    assert not (tmp_path / "m").exists()
