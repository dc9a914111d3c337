"""Scoring a bundle on a labelled split: counts summed over every tile, then the scores."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from unet.bundle import Bundle
from unet.dataset import Sample
from unet.errors import DatasetError
from unet.metrics import confusion_counts, scores


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
    for x, y, _ in ds:
        p = np.asarray(model(x, training=False))[..., 0]
        a, b, c = confusion_counts(y.numpy(), p, threshold)
        tp, fp, fn = tp + a, fp + b, fn + c
    return {**scores(tp, fp, fn), "tiles": len(samples), "threshold": threshold,
            "tp": tp, "fp": fp, "fn": fn}
