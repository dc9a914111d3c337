"""Scores of the landslide class over a whole split: counts are summed, then turned into scores.

A mean of per-batch F1 values is not the F1 of the split (a batch without landslides scores
0/0); so every metric here keeps true positive, false positive and false negative counts.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def scores(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision, recall, F1 and IoU of the positive class from counts; 0/0 is defined as 0."""
    tp, fp, fn = float(tp), float(fp), float(fn)

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else 0.0

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
    }


def confusion_counts(y_true, y_prob, threshold: float = 0.5) -> tuple[int, int, int]:
    """(tp, fp, fn) in NumPy: a pixel is predicted positive when its probability >= threshold."""
    truth = np.asarray(y_true).reshape(-1) > 0.5
    pred = np.asarray(y_prob).reshape(-1) >= threshold
    return (
        int(np.sum(truth & pred)),
        int(np.sum(~truth & pred)),
        int(np.sum(truth & ~pred)),
    )


def probability_histograms(y_true, y_prob, bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Histograms (positive, negative pixels) of probabilities in `bins` equal bins of [0, 1].

    Pixel p falls in bin min(floor(p * bins), bins - 1), so "p >= k / bins" is exactly "bin >= k":
    summing these histograms over a split is enough to score every threshold k / bins.
    """
    truth = np.asarray(y_true).reshape(-1) > 0.5
    idx = np.clip(np.floor(np.asarray(y_prob, np.float64).reshape(-1) * bins), 0, bins - 1)
    idx = idx.astype(np.int64)
    pos = np.bincount(idx[truth], minlength=bins).astype(np.int64)
    neg = np.bincount(idx[~truth], minlength=bins).astype(np.int64)
    return pos, neg


def best_threshold(pos_hist, neg_hist) -> tuple[float, dict[str, float]]:
    """The threshold k / bins (k = 1..bins-1) maximising F1, and its scores, from the histograms.

    Ties go to the lowest threshold. With no positives at all, 0.5 is returned.
    """
    pos = np.asarray(pos_hist, np.float64)
    neg = np.asarray(neg_hist, np.float64)
    bins = pos.size
    # tp[k] = positives with bin >= k: reversed cumulative sums.
    tp = np.cumsum(pos[::-1])[::-1]
    fp = np.cumsum(neg[::-1])[::-1]
    fn = pos.sum() - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    if pos.sum() == 0:
        k = bins // 2
    else:
        k = 1 + int(np.argmax(f1[1:]))
    return k / bins, scores(tp[k], fp[k], fn[k])


class _ConfusionMetric(keras.metrics.Metric):
    """Keeps tp/fp/fn counts (float32 variables) of the landslide class at a fixed threshold."""

    def __init__(self, threshold: float = 0.5, name: str | None = None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp", dtype="float32")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp", dtype="float32")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, "float32")
        truth = ops.cast(ops.reshape(y_true, ops.shape(y_pred)), "float32") > 0.5
        pred = y_pred >= self.threshold
        truth = ops.cast(truth, "float32")
        pred = ops.cast(pred, "float32")
        self.tp.assign_add(ops.sum(truth * pred))
        self.fp.assign_add(ops.sum((1.0 - truth) * pred))
        self.fn.assign_add(ops.sum(truth * (1.0 - pred)))

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)

    def _ratio(self, a, b):
        return ops.where(b > 0, a / ops.maximum(b, 1.0), 0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="landslide")
class LandslidePrecision(_ConfusionMetric):
    def __init__(self, threshold: float = 0.5, name: str = "precision", dtype=None):
        super().__init__(threshold, name, dtype)

    def result(self):
        return self._ratio(self.tp, self.tp + self.fp)


@keras.saving.register_keras_serializable(package="landslide")
class LandslideRecall(_ConfusionMetric):
    def __init__(self, threshold: float = 0.5, name: str = "recall", dtype=None):
        super().__init__(threshold, name, dtype)

    def result(self):
        return self._ratio(self.tp, self.tp + self.fn)


@keras.saving.register_keras_serializable(package="landslide")
class LandslideF1(_ConfusionMetric):
    def __init__(self, threshold: float = 0.5, name: str = "f1", dtype=None):
        super().__init__(threshold, name, dtype)

    def result(self):
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


@keras.saving.register_keras_serializable(package="landslide")
class LandslideIoU(_ConfusionMetric):
    """Jaccard index of the landslide class."""

    def __init__(self, threshold: float = 0.5, name: str = "iou", dtype=None):
        super().__init__(threshold, name, dtype)

    def result(self):
        return self._ratio(self.tp, self.tp + self.fp + self.fn)
