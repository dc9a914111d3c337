"""The model bundle: round trip with safe_mode, errors naming the file, normalisation."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from common.errors import BundleError
from unet.bundle import (
    BUNDLE_FILE,
    Bundle,
    check_model_file,
    load_bundle,
    normalize,
    save_bundle,
    write_json_atomic,
)
from unet.model import build_unet

BANDS = [f"b{i}" for i in range(5)]


def _info() -> Bundle:
    return Bundle(
        bands=BANDS, tile_size=128, convention="test", threshold=0.4,
        normalization={"mean": [1.0] * 5, "std": [2.0] * 5, "clip": 3.0},
        percentiles={"q": [50], "values": [[1.0]] * 5},
        metrics={"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0, "epoch": 1},
        model={"base_width": 4, "depth": 2, "batch_norm": True, "dropout": 0.0},
    )


def test_bundle_roundtrip_predicts_the_same(tmp_path):
    model = build_unet(bands=5, base_width=4, depth=2)
    x = np.random.default_rng(0).standard_normal((2, 32, 64, 5)).astype(np.float32)
    before = np.asarray(model(x, training=False))
    written = save_bundle(tmp_path, model, _info())
    assert len(written.model_id) == 16 and written.created.endswith("+00:00")
    assert set(written.versions) == {"tensorflow", "keras", "numpy", "python"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    loaded, bundle = load_bundle(tmp_path)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), before, atol=1e-6)
    assert bundle.bands == BANDS and bundle.threshold == 0.4 and bundle.model_id == written.model_id


def test_missing_or_corrupt_bundle_names_the_file(tmp_path):
    with pytest.raises(BundleError, match=BUNDLE_FILE):
        load_bundle(tmp_path)
    save_bundle(tmp_path, build_unet(bands=5, base_width=4, depth=1), _info())
    (tmp_path / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="model.keras"):
        load_bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text("{")
    with pytest.raises(BundleError, match=BUNDLE_FILE):
        load_bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text(json.dumps({"bands": BANDS}))
    with pytest.raises(BundleError, match=BUNDLE_FILE):
        load_bundle(tmp_path)


def test_normalize_clips_and_checks_bands():
    bundle = _info()
    x = np.array([[[1.0, 3.0, -1.0, 100.0, -100.0]]], np.float64)
    out = normalize(x, bundle)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [0.0, 1.0, -1.0, 3.0, -3.0])
    with pytest.raises(BundleError, match="4 bands"):
        normalize(np.zeros((2, 2, 4)), bundle)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_bundle_files_take_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_bundle(tmp_path, build_unet(bands=5, base_width=4, depth=1), _info())
        write_json_atomic(tmp_path / "scores.json", {"f1": 1.0})
    finally:
        os.umask(old)
    for name in ("model.keras", BUNDLE_FILE, "scores.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    save_bundle(out, build_unet(bands=5, base_width=4, depth=1), _info())
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("model.keras", BUNDLE_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_check_model_file_accepts_a_bundle_without_loading_tensorflow(bundle_dir):
    code = ("import sys; from unet.bundle import check_model_file; "
            f"check_model_file({str(bundle_dir)!r}); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _garbage(d: Path):
    (d / "model.keras").write_bytes(b"garbage, not a zip")


def _truncated(d: Path):
    data = (d / "model.keras").read_bytes()
    (d / "model.keras").write_bytes(data[: len(data) // 2])


def _no_weights(d: Path):
    with zipfile.ZipFile(d / "model.keras") as zf:
        config = zf.read("config.json")
    with zipfile.ZipFile(d / "model.keras", "w") as zf:
        zf.writestr("config.json", config)


def _bad_weights(d: Path):
    with zipfile.ZipFile(d / "model.keras") as zf:
        config = zf.read("config.json")
    with zipfile.ZipFile(d / "model.keras", "w") as zf:
        zf.writestr("config.json", config)
        zf.writestr("model.weights.h5", b"not hdf5")


def _bad_config(d: Path):
    with zipfile.ZipFile(d / "model.keras") as zf:
        weights = zf.read("model.weights.h5")
    with zipfile.ZipFile(d / "model.keras", "w") as zf:
        zf.writestr("config.json", "{")
        zf.writestr("model.weights.h5", weights)


def _replaced(d: Path):
    """Another valid model copied over model.keras, bundle.json left as it was."""
    other = build_unet(bands=5, base_width=4, depth=2)
    other.save(d / "model.keras")


def _other_bands(d: Path):
    build_unet(bands=3, base_width=4, depth=1).save(d / "model.keras")
    meta = json.loads((d / BUNDLE_FILE).read_text())
    meta["model_id"] = ""  # no id to compare: the band check must still catch it
    (d / BUNDLE_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, words", [
    (_garbage, "not a Keras model file (bad zip"),
    (_truncated, "not a Keras model file (bad zip"),
    (_no_weights, "not a Keras model file (no model.weights.h5 inside)"),
    (_bad_weights, "not a Keras model file (model.weights.h5:"),
    (_bad_config, "not a Keras model file (config.json:"),
    (_replaced, "does not match bundle.json (model_id "),
    (_other_bands, "model takes 3 bands, bundle.json lists 5"),
])
def test_check_model_file_refuses_a_bad_model_file_in_one_line(bundle_dir, tmp_path, damage,
                                                                words):
    d = _copy(bundle_dir, tmp_path / "m")
    check_model_file(d)  # the copy is good
    damage(d)
    with pytest.raises(BundleError) as info:
        check_model_file(d)
    message = str(info.value)
    assert message.startswith(f"{d / 'model.keras'}: ") and words in message
    assert "\n" not in message


def test_check_model_file_needs_both_files(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path / "m")
    (d / "model.keras").unlink()
    with pytest.raises(BundleError, match=r"model\.keras: missing"):
        check_model_file(d)
    (d / BUNDLE_FILE).unlink()
    with pytest.raises(BundleError, match=BUNDLE_FILE):
        check_model_file(d)
