"""Scoring a bundle on a labelled split: counts summed over every tile, then the scores.

Also what evaluation and training share around the data: the check that a dataset suits a
bundle, and the iteration over a tf.data pipeline that turns its failures into one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from unet.bundle import BUNDLE_FILE, Bundle
from unet.dataset import DatasetInfo, Sample
from unet.errors import BundleError, DatasetError
from unet.metrics import confusion_counts, scores

_RAISED = re.compile(r"^\s*([\w.]*(?:Error|Exception)): (.+?)\s*$", re.M)
_OURS = ("DatasetError", "UnetError", "BundleError", "LandslideError")


def pipeline_message(exc: tf.errors.OpError, data: str | Path) -> str:
    """One line for a failure inside a tf.data pipeline: the Python error raised in the reader
    (its message names the file), else TensorFlow's first line, prefixed with the data folder."""
    raised = _RAISED.findall(exc.message or "")
    if raised:
        cls, text = raised[-1]
        if cls.rsplit(".", 1)[-1] in _OURS:
            return text
        return f"{data}: reading a patch failed in the input pipeline ({cls}: {text})"
    first = next((line.strip() for line in (exc.message or "").splitlines() if line.strip()),
                 type(exc).__name__)
    return f"{data}: the input pipeline failed ({first})"


def input_batches(dataset: Iterable, data: str | Path) -> Iterator:
    """The batches of a (distributed) tf.data dataset. An error while producing one (a file that
    became unreadable after the checks, a disk error) is raised as DatasetError, one line, so that
    the job reports it and ends instead of leaving TensorFlow's traceback and threads behind."""
    iterator = iter(dataset)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            raise DatasetError(pipeline_message(exc, data)) from exc
        yield batch


def _bands(bands: Sequence[str]) -> str:
    return f"{len(bands)} bands ({', '.join(bands)})"


def check_dataset_matches(bundle: Bundle, info: DatasetInfo, model_dir: str | Path) -> None:
    """Refuse a dataset of another radiometric convention or other bands than the bundle's:
    scoring it would give meaningless numbers (F1 0 for a convention mismatch), silently."""
    meta = Path(model_dir) / BUNDLE_FILE
    described = (info.root / "dataset.json").exists()
    where = (f"{info.root / 'dataset.json'} says" if described else
             f"{info.root} (no dataset.json: the Landslide4Sense release) is")
    if info.convention != bundle.convention:
        raise BundleError(f"{meta}: the model was trained on convention {bundle.convention!r}, "
                          f"but {where} {info.convention!r}")
    if tuple(info.bands) != tuple(bundle.bands):
        raise BundleError(f"{meta}: the model takes {_bands(bundle.bands)}, but {where} "
                          f"{_bands(info.bands)}")


def evaluate_samples(
    model: keras.Model,
    bundle: Bundle,
    samples: Sequence[Sample],
    threshold: float | None = None,
    batch_size: int = 16,
) -> dict:
    """{precision, recall, f1, iou, tiles, threshold, tp, fp, fn} of the landslide class."""
    from unet.pipeline import make_dataset

    if not samples or any(s.mask is None for s in samples):
        raise DatasetError(f"{samples[0].image.parent.parent if samples else '?'}: "
                           "evaluation needs masks for every image")
    threshold = bundle.threshold if threshold is None else float(threshold)
    ds = make_dataset(samples, bundle.mean.tolist(), bundle.std.tolist(), bundle.clip,
                      batch_size, training=False)
    tp = fp = fn = 0
    for x, y, _ in input_batches(ds, samples[0].image.parent.parent):
        p = np.asarray(model(x, training=False))[..., 0]
        a, b, c = confusion_counts(y.numpy(), p, threshold)
        tp, fp, fn = tp + a, fp + b, fn + c
    return {**scores(tp, fp, fn), "tiles": len(samples), "threshold": threshold,
            "tp": tp, "fp": fp, "fn": fn}
