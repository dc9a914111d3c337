"""Input checks of jobs.train and jobs.evaluate: bad patches refused before the first training
step, a failure inside the tf.data pipeline that ends the process, checkpoints that are not
overwritten or resumed with another model, readable checkpoint files, and a bundle scored only
on data of its convention and bands. Every job runs as a subprocess, with a timeout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.data.l4s import data as l4s_data
from unet.bundle import Bundle, save_bundle
from unet.dataset import read_image
from unet.model import build_unet

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--base-width", "4", "--depth", "2", "--batch-size", "8", "--quiet", "--threads", "1"]


def _env():
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return env


def _run(args, timeout=180):
    """Run a command; a hang fails the test (subprocess.run kills it at the timeout)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _one_error_line(r, prog):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[0].startswith(f"python -m {prog}: error: ")
    return lines[0]


def _plant(root: Path, case: str) -> tuple[Path, str]:
    if case == "corrupt_valid_image":
        path = root / "ValidData/img/image_2.h5"
        path.write_bytes(b"\x89HDF\r\n truncated")
        return path, "cannot read dataset 'img'"
    if case == "nan_train_image":
        path = root / "TrainData/img/image_5.h5"
        x = read_image(path)
        x[7, 8, 0] = np.nan
        return l4s_data.write_h5(path, "img", x), "non-finite value (NaN or inf)"
    if case == "other_shape":
        path = root / "ValidData/img/image_3.h5"
        return (l4s_data.write_h5(path, "img", read_image(path)[:, :, :13]),
                "13 bands, expected 14")
    if case == "mask_0_255":
        path = root / "TrainData/mask/mask_4.h5"
        m = np.zeros((32, 32), np.uint8)
        m[10:12] = 255
        return l4s_data.write_h5(path, "mask", m), "must hold only 0 and 1, found 255"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["corrupt_valid_image", "nan_train_image", "other_shape",
                                  "mask_0_255"])
def test_bad_patch_is_refused_before_the_first_training_step(tmp_path, case):
    data = l4s_data.make_l4s(tmp_path / "data", n_train=16, n_valid=4)
    path, words = _plant(data, case)
    out = tmp_path / "model"
    r = _run(["-m", "jobs.train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY])
    line = _one_error_line(r, "jobs.train")
    assert f"{path}: " in line and words in line
    assert not out.exists()  # nothing trained, no statistics, no checkpoint


_FAILING_READER = """
import sys
import unet.pipeline as pipeline
from jobs import train

original = pipeline.read_image

def read_image(path):
    # Passes the checks (they read with h5py directly), fails inside tf.data: a disk error.
    if str(path).endswith("ValidData/img/image_3.h5"):
        raise OSError(f"{path}: simulated disk error")
    return original(path)

pipeline.read_image = read_image
sys.argv = ["jobs.train", *sys.argv[1:]]
train.run_main(train.main)
"""


def test_a_failure_inside_the_input_pipeline_ends_the_process(tmp_path):
    data = l4s_data.make_l4s(tmp_path / "data", n_train=16, n_valid=4)
    script = tmp_path / "failing_reader.py"
    script.write_text(_FAILING_READER)
    r = _run([str(script), "--data", str(data), "--out", str(tmp_path / "model"),
              "--strategy", "mirrored", "--replicas", "2", "--epochs", "1", *TINY], timeout=180)
    line = _one_error_line(r, "jobs.train")
    assert "input pipeline" in line
    assert f"{data / 'ValidData/img/image_3.h5'}: simulated disk error" in line


def _fake_checkpoint(out: Path, **config) -> Path:
    """A state.json as the training loop writes it (the checks read nothing else)."""
    path = out / "checkpoints" / "state.json"
    path.parent.mkdir(parents=True)
    state = {"epoch": 3, "config": {"base_width": 4, "depth": 2, "batch_norm": True,
                                    "dropout": 0.0, "precision": "float32", **config}}
    path.write_text(json.dumps(state))
    return path


def test_existing_checkpoint_needs_resume_and_the_same_model(tmp_path):
    data = l4s_data.make_l4s(tmp_path / "data", n_train=16, n_valid=4)
    out = tmp_path / "model"
    state = _fake_checkpoint(out)
    before = state.read_bytes()
    args = ["-m", "jobs.train", "--data", str(data), "--out", str(out), "--epochs", "4", *TINY]

    line = _one_error_line(_run(args), "jobs.train")
    assert f"{state}: a checkpoint (epoch 3) is already there" in line
    assert "pass --resume" in line and "another --out" in line

    line = _one_error_line(_run([*args, "--resume", "--base-width", "8"]), "jobs.train")
    assert f"{state}: cannot resume another model" in line
    assert "checkpoint --base-width 4, this run --base-width 8" in line
    assert "--depth" not in line  # only what differs

    line = _one_error_line(_run([*args, "--resume", "--no-batch-norm"]), "jobs.train")
    assert "checkpoint without --no-batch-norm, this run with --no-batch-norm" in line
    assert state.read_bytes() == before and sorted(os.listdir(out)) == ["checkpoints"]


def test_checkpoint_files_take_the_mode_the_umask_gives(tmp_path):
    import keras

    from unet.training import _save_checkpoint

    model = build_unet(bands=3, base_width=2, depth=1)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    old = os.umask(0o022)
    try:
        _save_checkpoint(tmp_path, model, optimizer, {"epoch": 1})
    finally:
        os.umask(old)
    files = sorted((tmp_path / "checkpoints").iterdir())
    assert [f.name for f in files] == ["epoch_0001.optimizer.npz", "epoch_0001.weights.h5",
                                       "state.json"]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
        f.name: "0o644" for f in files}


@pytest.fixture(scope="module")
def reflectance_bundle(tmp_path_factory):
    """An untrained 14-band bundle of convention s2-reflectance-v1 (scores do not matter)."""
    out = tmp_path_factory.mktemp("bundle")
    save_bundle(out, build_unet(bands=14, base_width=2, depth=1), Bundle(
        bands=list(l4s_data.BANDS), tile_size=32, convention="s2-reflectance-v1",
        normalization={"mean": [1.0] * 14, "std": [1.0] * 14, "clip": 10.0}, threshold=0.5))
    return out


def test_evaluate_refuses_another_convention(tmp_path, reflectance_bundle):
    release = l4s_data.make_l4s(tmp_path / "release", n_train=2, n_valid=2)  # no dataset.json
    line = _one_error_line(_run(["-m", "jobs.evaluate", "--data", str(release), "--model",
                                 str(reflectance_bundle)]), "jobs.evaluate")
    assert line.startswith(f"python -m jobs.evaluate: error: {reflectance_bundle}/bundle.json: ")
    assert "'s2-reflectance-v1'" in line and "'l4s-release'" in line and str(release) in line

    other = l4s_data.make_l4s(tmp_path / "other", n_train=2, n_valid=2, convention="s2-x")
    line = _one_error_line(_run(["-m", "jobs.evaluate", "--data", str(other), "--model",
                                 str(reflectance_bundle)]), "jobs.evaluate")
    assert "'s2-reflectance-v1'" in line and f"{other}/dataset.json says 's2-x'" in line


def test_evaluate_refuses_other_bands_and_bad_patches(tmp_path, reflectance_bundle):
    data = l4s_data.make_l4s(tmp_path / "data", n_train=2, n_valid=4,
                             convention="s2-reflectance-v1")
    meta = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**meta, "bands": meta["bands"][:13]}))
    line = _one_error_line(_run(["-m", "jobs.evaluate", "--data", str(data), "--model",
                                 str(reflectance_bundle)]), "jobs.evaluate")
    assert "the model takes 14 bands" in line and "13 bands" in line

    (data / "dataset.json").write_text(json.dumps(meta))
    path, words = _plant(data, "other_shape")
    line = _one_error_line(_run(["-m", "jobs.evaluate", "--data", str(data), "--model",
                                 str(reflectance_bundle)]), "jobs.evaluate")
    assert f"{path}: " in line and words in line
