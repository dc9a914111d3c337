"""The model bundle: MODEL_DIR/model.keras (native Keras format) + MODEL_DIR/bundle.json.

bundle.json says everything inference needs besides the weights: band names and order, tile
size, radiometric convention, normalisation, decision threshold, training percentiles (for
harmonising other data), the scores reached, and the versions that wrote it. Both files are
written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unet.errors import BundleError
from unet.normalize import normalize_array

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
BUNDLE_FILE = "bundle.json"


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


def _file_id(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write JSON under a temporary name in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        model_id = _file_id(tmp_model)
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
