"""Prediction on arrays: a window of the scene (bands first, as stored) in, probabilities out.

The window is run through the fully convolutional network in one call: the tiles of a block
form one large batch without any seam between them. Where windows come from (a tile store, a
block and its halo) is the caller's business (``mapping.block``); this module sees arrays only.

The model is loaded once per worker process, lazily on first use, and cached by model directory
AND the model's identity (``unet.bundle.model_identity``: model.keras and every field of
bundle.json that changes a prediction). A kept cluster outlives a retraining, or an edit of
bundle.json's normalisation, in the same directory: the new bundle must be loaded, and a job must
never predict with a model other than the one it names;
TensorFlow's thread pools are sized before the first operation so that workers x threads x
intra-op threads do not oversubscribe the cores.
"""

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from common import provenance
from common.errors import BundleError
from unet.bundle import (
    MODEL_FILE,
    Bundle,
    bundle_identity,
    load_bundle,
    model_identity,
)
from unet.matplotlib_guard import matplotlib_kept_out
from unet.quiet import import_tensorflow

_LOCK = threading.Lock()
_MODELS: OrderedDict[tuple[str, str], tuple[object, Bundle]] = OrderedDict()
"""(model_dir, model identity digest) -> (inference function, bundle), least recently used
first."""
MODELS_PER_WORKER = 2
"""Models kept per process: the current one and the one before it (jobs of an older bundle may
still be running when a newer one arrives). Older ones are dropped."""


def _configure_threads(intra_op: int | None) -> None:
    import tensorflow as tf

    if intra_op is None:
        intra_op = max(1, (os.cpu_count() or 1) // _worker_threads())
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already ran an op in this process: its pools are fixed now.


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, get_worker().state.nthreads)
    except (ImportError, ValueError):
        return 1


def cached_model(model_dir: str, intra_op_threads: int | None = None,
                 model_key: str | None = None) -> tuple[object, Bundle]:
    """The inference function and bundle of the model whose identity digest is ``model_key``
    in model_dir, loaded once per process (None: the model model_dir holds now).

    Raises BundleError naming model_dir when the directory no longer holds that model (the
    bundle was replaced or edited under a running job) and it is not in the cache.

    Under TensorFlow the function is a tf.function with free batch and window sizes (traced
    once): 1.5x the speed of eager calls on 1088 px windows, measured on 2 cores.
    """
    if model_key is None:
        model_key = bundle_identity(model_dir).digest
    key = (model_dir, model_key)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load(model_dir, model_key, intra_op_threads)
            while len(_MODELS) > MODELS_PER_WORKER:
                _MODELS.popitem(last=False)
        _MODELS.move_to_end(key)
        return _MODELS[key]


def _load(model_dir: str, model_key: str,
          intra_op_threads: int | None) -> tuple[object, Bundle]:
    on_tf = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    with matplotlib_kept_out():  # Keras imports pyplot otherwise: about 1 s per worker
        if on_tf:
            import_tensorflow()  # without its start-up lines in the job's output
            _configure_threads(intra_op_threads)  # before load_bundle runs any TF op
        keras_model, bundle = load_bundle(model_dir)
    _check_identity(model_dir, model_key, bundle)
    infer = lambda x: keras_model(x, training=False)  # noqa: E731
    if on_tf:
        import tensorflow as tf

        spec = tf.TensorSpec([None, None, None, len(bundle.bands)], tf.float32)
        infer = tf.function(infer, input_signature=[spec])
    return infer, bundle


def _check_identity(model_dir: str, model_key: str, bundle: Bundle) -> None:
    """The loaded model must be the one asked for: the identity of the bundle.json just read
    and of model.keras hashed after the load (a retraining replaces model.keras before
    bundle.json, and a load in between would read the new weights under the old bundle.json)."""
    path = Path(model_dir) / MODEL_FILE
    try:
        found = model_identity(bundle, provenance.file_sha256(path)).digest
    except OSError as exc:
        raise BundleError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if found != model_key:
        raise BundleError(f"{model_dir}: the model bundle changed under a running job (the job "
                          f"asked for model {model_key}, the directory holds {found}); "
                          "run the job again")


def preload(model_dir: str, intra_op_threads: int | None = None,
            model_key: str | None = None) -> float:
    """Import TensorFlow and load the model into this worker's cache, ahead of its first block
    (the job submits it while the scene is being tiled); returns the seconds it took."""
    start = time.perf_counter()
    cached_model(model_dir, intra_op_threads, model_key)
    return time.perf_counter() - start


def predict_window(model, x: np.ndarray, tta: bool = False) -> np.ndarray:
    """Probabilities (H, W) for one normalised channels-last window (H, W, bands).

    `model` is called as model(batch) in inference mode (see cached_model).

    With tta, the mean over the 8 flips and 90-degree rotations, each undone before averaging.
    """
    import keras

    def run(a: np.ndarray) -> np.ndarray:
        out = model(np.ascontiguousarray(a[None]))
        return keras.ops.convert_to_numpy(out)[0, ..., 0].astype(np.float32)

    if not tta:
        return run(x)
    total = np.zeros(x.shape[:2], dtype=np.float64)
    for k in range(4):
        for flip in (False, True):
            a = np.rot90(x, k, axes=(0, 1))
            a = a[:, ::-1] if flip else a
            p = run(a)
            p = p[:, ::-1] if flip else p
            total += np.rot90(p, -k, axes=(0, 1))
    return (total / 8.0).astype(np.float32)


def normalized_window(image: np.ndarray, ok: np.ndarray, bundle: Bundle,
                      scale: tuple[float, ...] | None = None,
                      offset: tuple[float, ...] | None = None) -> np.ndarray:
    """The network's input for a bands-first float32 window (bands, h, w), channels last.

    Optional harmonisation ``x * scale + offset`` per band, then the bundle's normalisation,
    then 0 where ``ok`` is False. Works in place on ``image`` (which it owns after the call),
    band by band on contiguous planes: the same float32 operations as ``normalize`` on the
    channels-last view, so bitwise the same result, at a third of its time on a 1088 px window.
    """
    if image.shape[0] != len(bundle.bands):
        raise BundleError(f"input has {image.shape[0]} bands, the bundle expects "
                          f"{len(bundle.bands)} ({', '.join(bundle.bands)})")
    x = np.asarray(image, dtype=np.float32)
    planes = (slice(None), None, None)
    if scale is not None:
        x *= np.asarray(scale, np.float32)[planes]
        x += np.asarray(offset, np.float32)[planes]
    std = bundle.std
    std = np.where(std > 0, std, np.float32(1.0))
    x -= bundle.mean[planes]
    x /= std[planes]
    np.clip(x, -bundle.clip, bundle.clip, out=x)
    x[:, ~ok] = 0.0
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))
