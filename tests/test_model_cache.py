"""The per-worker model cache on a kept cluster: a model retrained into the same MODEL_DIR is
loaded (the cache is keyed by the bundle's model_id, not only the directory), a bundle replaced
under a running job is refused rather than predicted with, and at most MODELS_PER_WORKER models
stay in memory.

Everything runs in this process, as on one worker that outlives several jobs.
"""

import shutil
from collections import OrderedDict
from pathlib import Path

import keras
import numpy as np
import pytest
import zarr

from common.errors import BundleError
from mapping.block import BlockJob, map_block
from simulator.world import simulate_window
from tests.data.model.data import make_bundle
from tiler.bands import BANDS
from tiler.grid import Grid
from unet import predict
from unet.bundle import (
    BUNDLE_FILE,
    MODEL_FILE,
    bundle_identity,
    load_bundle,
    normalize,
    read_bundle,
    save_bundle,
)
from unet.predict import cached_model, predict_window

SIZE = 256


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    """A small trained bundle, and the same with other weights (so another model_id), as a
    retraining would write it."""
    root = tmp_path_factory.mktemp("bundles")
    a = make_bundle(root / "a", seed=0, n=16, epochs=1)
    model, _ = load_bundle(a)
    rng = np.random.default_rng(1)
    model.set_weights([w + 0.2 * rng.standard_normal(w.shape).astype(w.dtype) * (w.std() + 0.1)
                       for w in model.get_weights()])
    b = root / "b"
    save_bundle(b, model, read_bundle(a))
    assert read_bundle(a).model_id != read_bundle(b).model_id
    return a, b


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A (14, SIZE, SIZE) window of the synthetic world."""
    return simulate_window(7, 1000, -2000, SIZE, SIZE)[0]


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    """Each test starts as a fresh worker process: nothing cached."""
    monkeypatch.setattr(predict, "_MODELS", OrderedDict())


def install(src: Path, model_dir: Path, files: tuple[str, ...] = (MODEL_FILE, BUNDLE_FILE)):
    """Put the bundle of src into model_dir, as a retraining into model_dir does (model.keras
    first, then bundle.json)."""
    model_dir.mkdir(exist_ok=True)
    for name in files:
        shutil.copyfile(src / name, model_dir / name)
    return bundle_identity(src).digest


def reference(bundle_dir: Path, image: np.ndarray) -> np.ndarray:
    """The bundle's probabilities for the whole window, straight from Keras."""
    model, bundle = load_bundle(bundle_dir)
    x = normalize(np.moveaxis(image, 0, -1), bundle)
    p = keras.ops.convert_to_numpy(model(x[None], training=False))[0, ..., 0]
    assert np.isfinite(p).all()
    return p


def test_a_model_retrained_into_the_same_dir_is_loaded(tmp_path, bundles, image):
    a, b = bundles
    model_dir = tmp_path / "model"
    id_a = install(a, model_dir)
    infer, bundle = cached_model(str(model_dir), model_key=id_a)
    before = predict_window(infer, normalize(np.moveaxis(image, 0, -1), bundle))
    np.testing.assert_allclose(before, reference(a, image), atol=1e-5)

    id_b = install(b, model_dir)  # retrained while the worker lives on
    infer, bundle = cached_model(str(model_dir), model_key=id_b)
    after = predict_window(infer, normalize(np.moveaxis(image, 0, -1), bundle))
    assert bundle.model_id == read_bundle(b).model_id != read_bundle(a).model_id
    np.testing.assert_allclose(after, reference(b, image), atol=1e-5)
    assert np.abs(after - before).max() > 1e-3  # the weights did change
    # No model_id given: whatever the directory holds now.
    assert cached_model(str(model_dir))[1].model_id == read_bundle(b).model_id


def test_a_bundle_replaced_under_a_running_job_is_refused(tmp_path, bundles):
    a, b = bundles
    model_dir = tmp_path / "model"
    id_a = install(a, model_dir)
    id_b = install(b, model_dir)
    with pytest.raises(BundleError) as info:
        cached_model(str(model_dir), model_key=id_a)
    msg = str(info.value)
    assert msg.startswith(f"{model_dir}: the model bundle changed under a running job")
    assert id_a in msg and id_b in msg and "\n" not in msg
    assert not predict._MODELS  # nothing cached under the wrong id


def test_new_weights_under_the_old_bundle_json_are_refused(tmp_path, bundles):
    """Half-way through a retraining: model.keras is new, bundle.json still the old one."""
    a, b = bundles
    model_dir = tmp_path / "model"
    id_a = install(a, model_dir)
    install(b, model_dir, files=(MODEL_FILE,))
    assert bundle_identity(model_dir).digest != id_a  # (new weights: another identity)
    with pytest.raises(BundleError, match="changed under a running job"):
        cached_model(str(model_dir), model_key=id_a)


def test_at_most_two_models_per_worker_least_recently_used_dropped(tmp_path, bundles):
    a, b = bundles
    dirs = [tmp_path / f"m{i}" for i in range(3)]
    ids = [install(src, d) for src, d in zip((a, b, a), dirs, strict=True)]
    keys = [(str(d), i) for d, i in zip(dirs, ids, strict=True)]
    first = cached_model(str(dirs[0]), model_key=ids[0])
    cached_model(str(dirs[1]), model_key=ids[1])
    assert cached_model(str(dirs[0]), model_key=ids[0]) is first  # a hit: now most recent
    cached_model(str(dirs[2]), model_key=ids[2])
    assert predict.MODELS_PER_WORKER == 2
    assert list(predict._MODELS) == [keys[0], keys[2]]


def _store(path: Path, image: np.ndarray) -> str:
    """The arrays map_block reads and writes, as in a tile store: one block of SIZE px."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("image", data=image, chunks=(14, 128, 128))
    group.create_array("valid", data=np.ones((SIZE, SIZE), np.uint8), chunks=(128, 128))
    group.create_array("probability", shape=(SIZE, SIZE), chunks=(128, 128),
                       shards=(SIZE, SIZE), dtype="float32", fill_value=np.nan)
    group.create_array("predicted", data=np.zeros((1, 1), np.uint8), chunks=(1, 1))
    return str(path)


GRID = Grid("EPSG:32645", (10.0, 0.0, 400000.0, 0.0, -10.0, 3100000.0), SIZE, SIZE, 128, SIZE)


def job(store: str, model_dir: Path, model_key: str | None = None) -> BlockJob:
    return BlockJob(store=store, predictions=store, grid=GRID, model_dir=str(model_dir),
                    threshold=0.5, min_area_m2=0.0,
                    bands=tuple(BANDS), preview_step=1, model_key=model_key)


def _predict(store: str, job: BlockJob) -> np.ndarray:
    group = zarr.open_group(store, mode="r+")
    group["predicted"][0, 0] = 0
    map_block(job, 0, 0)
    return group["probability"][:]


def test_map_block_predicts_with_the_jobs_model_id(tmp_path, bundles, image):
    a, b = bundles
    model_dir, store = tmp_path / "model", _store(tmp_path / "s.zarr", image)
    id_a = install(a, model_dir)
    assert job(store, model_dir).model_key is None  # the default
    old = _predict(store, job(store, model_dir, id_a))
    np.testing.assert_allclose(old, reference(a, image), atol=1e-5)

    id_b = install(b, model_dir)
    new = _predict(store, job(store, model_dir, id_b))
    np.testing.assert_allclose(new, reference(b, image), atol=1e-5)

    predict._MODELS.clear()  # a worker that never saw model A
    with pytest.raises(BundleError, match="changed under a running job"):
        _predict(store, job(store, model_dir, id_a))
