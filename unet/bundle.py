"""The model bundle: MODEL_DIR/model.keras (native Keras format) + MODEL_DIR/bundle.json.

bundle.json says everything inference needs besides the weights: band names and order, tile
size, radiometric convention, normalisation, decision threshold, training percentiles (for
harmonising other data), the scores reached, and the versions that wrote it. Both files are
written under a temporary name and renamed, so a reader never sees half a file, with the mode
the umask gives (0644 under umask 022: a shared model folder stays readable).

This module never imports TensorFlow or Keras at module level: the scene job's client reads
bundle.json and checks model.keras (`check_model_file`) without them.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common import provenance
from common.errors import BundleError
from common.owned import write_json_atomic
from common.provenance import Identity
from unet.normalize import normalize_array

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
BUNDLE_FILE = "bundle.json"
KERAS_CONFIG = "config.json"
KERAS_WEIGHTS = "model.weights.h5"


@dataclass
class Bundle:
    """The contents of bundle.json."""

    bands: list[str]
    tile_size: int
    convention: str
    normalization: dict
    """{"mean": [per band], "std": [per band], "clip": float, "source": "train" | "official"}"""
    threshold: float
    percentiles: dict = field(default_factory=dict)
    """{"q": [percent...], "values": [[one value per q] per band], "pixels": n}"""
    metrics: dict = field(default_factory=dict)
    """{"precision", "recall", "f1", "iou", "epoch"} on the validation split at `threshold`."""
    model: dict = field(default_factory=dict)
    """{"base_width", "depth", "batch_norm", "dropout", "bands"}"""
    loss: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    model_id: str = ""
    created: str = ""

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.normalization["mean"], np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.normalization["std"], np.float32)

    @property
    def clip(self) -> float:
        return float(self.normalization.get("clip", 10.0))


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_bundle(model_dir: str | Path, model: keras.Model, info: Bundle | dict) -> Bundle:
    """Write model.keras and bundle.json into model_dir; fills model_id, created and versions.

    `info` is a Bundle or a dict of its fields (model_id, created, versions may be omitted).
    Returns the Bundle as written.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    bundle = info if isinstance(info, Bundle) else Bundle(**info)
    tmp_model = model_dir / f".{MODEL_FILE}.{os.getpid()}.tmp.keras"
    try:
        model.save(tmp_model)
        model_id = provenance.file_sha256(tmp_model)
        os.replace(tmp_model, model_dir / MODEL_FILE)
    finally:
        tmp_model.unlink(missing_ok=True)
    bundle.model_id = model_id
    bundle.created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    bundle.versions = {**versions(), **bundle.versions}
    write_json_atomic(model_dir / BUNDLE_FILE, asdict(bundle))
    return bundle


def read_bundle(model_dir: str | Path) -> Bundle:
    """bundle.json alone (no Keras model): enough for normalisation and checks."""
    path = Path(model_dir) / BUNDLE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: missing (not a model bundle)") from exc
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from exc
    try:
        bundle = Bundle(**data)
        norm = bundle.normalization
        if len(norm["mean"]) != len(bundle.bands) or len(norm["std"]) != len(bundle.bands):
            raise ValueError("normalization mean/std do not match the bands")
        float(bundle.threshold)
    except (TypeError, KeyError, ValueError) as exc:
        raise BundleError(f"{path}: invalid bundle ({exc})") from exc
    return bundle


def _model_error(path: Path, problem: str) -> BundleError:
    return BundleError(f"{path}: {problem}")


def _input_bands(config: dict) -> int | None:
    """The channel count of a Functional model's single input, from config.json; None when the
    config does not say it in the form Keras 3 writes (one InputLayer with a batch_shape)."""
    inner = config.get("config")
    if config.get("class_name") != "Functional" or not isinstance(inner, dict):
        return None
    layers = inner.get("layers")
    if not isinstance(layers, list):
        return None
    inputs = [layer for layer in layers
              if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"]
    if len(inputs) != 1:
        return None
    shape = (inputs[0].get("config") or {}).get("batch_shape")
    if isinstance(shape, list) and shape and isinstance(shape[-1], int):
        return shape[-1]
    return None


def check_model_file(model_dir: str | Path) -> None:
    """Check MODEL_DIR/model.keras against bundle.json without TensorFlow or Keras.

    model.keras must be a zip holding config.json (a model config whose input, where it can be
    read, has one channel per bundle band) and model.weights.h5 (opened with h5py), and, when
    bundle.json names a model_id, its sha256 prefix must be that id: a model.keras copied over
    without its bundle.json is refused. Raises BundleError, one line naming the file.
    """
    import h5py

    bundle = read_bundle(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise _model_error(path, "missing")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for member in (KERAS_CONFIG, KERAS_WEIGHTS):
                if member not in names:
                    raise _model_error(path, f"not a Keras model file (no {member} inside)")
            config_text = zf.read(KERAS_CONFIG)
            weights = zf.read(KERAS_WEIGHTS)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        detail = "" if str(exc) in ("", "File is not a zip file") else f": {exc}"
        raise _model_error(path, f"not a Keras model file (bad zip{detail})") from exc
    except (OSError, zipfile.LargeZipFile) as exc:
        raise _model_error(path, f"unreadable ({exc})") from exc
    try:
        config = json.loads(config_text)
    except ValueError as exc:
        raise _model_error(path, f"not a Keras model file ({KERAS_CONFIG}: {exc})") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise _model_error(path, f"not a Keras model file ({KERAS_CONFIG} holds no model config)")
    bands_in = _input_bands(config)
    if bands_in is not None and bands_in != len(bundle.bands):
        raise _model_error(path, f"model takes {bands_in} bands, bundle.json lists "
                                 f"{len(bundle.bands)}")
    try:
        with h5py.File(io.BytesIO(weights), "r"):
            pass
    except OSError as exc:
        raise _model_error(path, f"not a Keras model file ({KERAS_WEIGHTS}: {exc})") from exc
    if bundle.model_id:
        found = provenance.file_sha256(path)
        if found != bundle.model_id:
            raise _model_error(path, f"does not match bundle.json (model_id {bundle.model_id}, "
                                     f"this file's {found}): replaced without its bundle.json?")


PREDICTION_FIELDS = ("bands", "tile_size", "convention", "normalization", "percentiles",
                     "model")
"""The fields of bundle.json that change a prediction (the band order, the normalisation, the
training percentiles that --harmonize maps onto, the architecture). ``threshold`` changes the
products, not the probabilities: it is part of the products' identity."""


def model_identity(bundle: Bundle, weights: str) -> Identity:
    """The identity of a model: the sha256 prefix of its model.keras (``weights``) and every
    field of its bundle that changes a prediction. Editing bundle.json's normalisation gives
    another identity even though ``model_id`` (model.keras alone) stays the same."""
    return provenance.make("model", {"weights_sha256": weights, "model_id": bundle.model_id,
                                     **{k: getattr(bundle, k) for k in PREDICTION_FIELDS}})


def bundle_identity(model_dir: str | Path) -> Identity:
    """``model_identity`` of the bundle in ``model_dir`` as its files are now (BundleError,
    naming the file, when one is missing or unreadable)."""
    bundle = read_bundle(model_dir)
    path = Path(model_dir) / MODEL_FILE
    try:
        weights = provenance.file_sha256(path)
    except OSError as exc:
        raise _model_error(path, f"unreadable ({exc.strerror or exc})") from exc
    return model_identity(bundle, weights)


def load_bundle(model_dir: str | Path, compile: bool = False) -> tuple[keras.Model, Bundle]:
    """The Keras model (loaded with safe_mode=True) and its Bundle.

    Raises BundleError naming the file when either file is missing or cannot be read, or when the
    model's input band count differs from the bundle's bands. Keras is imported here, not at
    module level, so that reading bundle.json (the job's client does) costs no TensorFlow import.
    """
    import keras

    import unet.loss  # noqa: F401  (registers LandslideLoss for deserialisation)
    import unet.metrics  # noqa: F401  (registers the metrics)

    bundle = read_bundle(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise BundleError(f"{path}: missing")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds for a bad file
        raise BundleError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from exc
    bands_in = model.inputs[0].shape[-1]
    if bands_in is not None and bands_in != len(bundle.bands):
        raise BundleError(f"{path}: model takes {bands_in} bands, bundle.json lists "
                          f"{len(bundle.bands)}")
    return model, bundle


def normalize(x, bundle: Bundle) -> np.ndarray:
    """Channels-last input (..., bands) -> float32 (x - mean) / std clipped to +-clip (NumPy)."""
    x = np.asarray(x)
    if x.shape[-1] != len(bundle.bands):
        raise BundleError(f"input has {x.shape[-1]} bands, the bundle expects "
                          f"{len(bundle.bands)} ({', '.join(bundle.bands)})")
    return normalize_array(x, bundle.mean, bundle.std, bundle.clip)
