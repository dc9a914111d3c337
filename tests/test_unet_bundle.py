"""The model bundle: round trip with safe_mode, errors naming the file, normalisation."""

import json

import numpy as np
import pytest

from unet.bundle import BUNDLE_FILE, Bundle, load_bundle, normalize, save_bundle
from unet.errors import BundleError
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
