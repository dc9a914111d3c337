"""Scoring a bundle on a labelled split: counts summed over every tile, then the scores; the
counts of each patch and the probability histograms, for the evaluation figure.

Also what evaluation and training share around the data: the check that a dataset suits a
bundle, and the iteration over a tf.data pipeline that turns its failures into one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.errors import BundleError, DatasetError, UnetError
from unet.bundle import BUNDLE_FILE, Bundle, normalize
from unet.dataset import DatasetInfo, Sample, read_image, read_mask
from unet.metrics import probability_histograms, scores

_RAISED = re.compile(r"^\s*([\w.]*(?:Error|Exception)): (.+?)\s*$", re.M)
_OURS = ("DatasetError", "UnetError", "BundleError", "LandslideError")
HIST_BINS = 1000
"""Probability bins of a split's histograms: thresholds k / 1000 (the bundle's k / 200 among
them) are scored exactly."""
RGB = ("B4", "B3", "B2")


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


def input_batches(dataset: Iterable, data: str | Path, count: int | None = None) -> Iterator:
    """The batches of a (distributed) tf.data dataset. An error while producing one (a file that
    became unreadable after the checks, a disk error) is raised as DatasetError, one line, so that
    the job reports it and ends instead of leaving TensorFlow's traceback and threads behind.

    count: the number of batches the dataset holds, when known; they are taken without asking
    for one more. A distributed dataset (MirroredStrategy's multi-device iterator) took 4-14 s
    to say that it had ended, on 2 CPU replicas: that wait, not the replicas, made mirrored
    training slower than the default strategy."""
    iterator = iter(dataset)
    taken = 0
    while count is None or taken < count:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            raise DatasetError(pipeline_message(exc, data)) from exc
        taken += 1
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


def patch_counts(y_true, y_prob, threshold: float) -> np.ndarray:
    """int64 (patches, 3): tp, fp, fn of each patch of a batch, by the rule of
    unet.metrics.confusion_counts (truth > 0.5, prediction: probability >= threshold)."""
    truth = np.asarray(y_true) > 0.5
    pred = np.asarray(y_prob) >= threshold
    axes = tuple(range(1, truth.ndim))
    return np.stack([np.sum(truth & pred, axis=axes), np.sum(~truth & pred, axis=axes),
                     np.sum(truth & ~pred, axis=axes)], axis=1).astype(np.int64)


@dataclass(frozen=True)
class SplitResult:
    """One pass of a model over a split: the counts of every patch at the threshold, and the
    histograms of the probabilities of landslide and other pixels (every threshold's scores)."""

    threshold: float
    counts: np.ndarray
    """int64 (patches, 3): tp, fp, fn, in the order of the samples."""
    pos_hist: np.ndarray
    neg_hist: np.ndarray

    def summary(self) -> dict:
        """{precision, recall, f1, iou, tiles, threshold, tp, fp, fn} of the whole split."""
        tp, fp, fn = (int(v) for v in self.counts.sum(axis=0))
        return {**scores(tp, fp, fn), "tiles": len(self.counts), "threshold": self.threshold,
                "tp": tp, "fp": fp, "fn": fn}


def score_split(
    model: keras.Model,
    bundle: Bundle,
    samples: Sequence[Sample],
    threshold: float | None = None,
    batch_size: int = 16,
    bins: int = HIST_BINS,
) -> SplitResult:
    """Predict every patch of a labelled split once; counts per patch and histograms."""
    from unet.pipeline import make_dataset

    if not samples or any(s.mask is None for s in samples):
        raise DatasetError(f"{samples[0].image.parent.parent if samples else '?'}: "
                           "evaluation needs masks for every image")
    threshold = bundle.threshold if threshold is None else float(threshold)
    ds = make_dataset(samples, bundle.mean.tolist(), bundle.std.tolist(), bundle.clip,
                      batch_size, training=False)
    counts = []
    pos, neg = np.zeros(bins, np.int64), np.zeros(bins, np.int64)
    for x, y, _ in input_batches(ds, samples[0].image.parent.parent):
        p = np.asarray(model(x, training=False), np.float32)[..., 0]
        y = y.numpy()
        counts.append(patch_counts(y, p, threshold))
        batch_pos, batch_neg = probability_histograms(y, p, bins)
        pos, neg = pos + batch_pos, neg + batch_neg
    return SplitResult(threshold, np.concatenate(counts), pos, neg)


def evaluate_samples(
    model: keras.Model,
    bundle: Bundle,
    samples: Sequence[Sample],
    threshold: float | None = None,
    batch_size: int = 16,
) -> dict:
    """{precision, recall, f1, iou, tiles, threshold, tp, fp, fn} of the landslide class."""
    return score_split(model, bundle, samples, threshold, batch_size).summary()


def precision_recall_curve(pos_hist, neg_hist) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of "probability >= k / bins" for k = 0 .. bins - 1, from the two
    histograms; thresholds at which no pixel is predicted positive are left out."""
    pos = np.asarray(pos_hist, np.float64)
    neg = np.asarray(neg_hist, np.float64)
    tp = np.cumsum(pos[::-1])[::-1]
    fp = np.cumsum(neg[::-1])[::-1]
    predicted = tp + fp > 0
    tp, fp = tp[predicted], fp[predicted]
    recall = tp / pos.sum() if pos.sum() > 0 else np.zeros_like(tp)
    return recall, tp / (tp + fp)


def patch_f1(counts: np.ndarray) -> np.ndarray:
    """F1 of each patch from its (tp, fp, fn); 1.0 for a patch with nothing to find and nothing
    found (it is right, not wrong)."""
    tp, fp, fn = (np.asarray(counts, np.float64)[:, i] for i in range(3))
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.ones_like(tp), where=denom > 0)


def pick_patches(counts: np.ndarray, per_group: int = 4) -> dict[str, np.ndarray]:
    """Indices of the worst, median and best patches by F1, ``per_group`` of each (fewer when
    the split has fewer than 3 x per_group patches). Patches with no landslide pixel in truth or
    prediction say nothing about errors: they are left out unless too few others remain."""
    f1 = patch_f1(counts)
    shown = np.flatnonzero(np.asarray(counts).sum(axis=1) > 0)
    if len(shown) < 3 * per_group:
        shown = np.arange(len(f1))
    order = shown[np.argsort(f1[shown], kind="stable")]
    n = min(per_group, max(1, len(order) // 3))
    middle = max(0, len(order) // 2 - n // 2)
    return {"worst": order[:n], "median": order[middle: middle + n], "best": order[-n:]}


def rgb_bands(bands: Sequence[str]) -> list[int]:
    """Indices of B4, B3, B2 (red, green, blue) in ``bands``; the first three without them."""
    if all(b in bands for b in RGB):
        return [list(bands).index(b) for b in RGB]
    return [0, 1, 2]


def patch_views(model: keras.Model, bundle: Bundle, samples: Sequence[Sample],
                picks: dict[str, np.ndarray], threshold: float) -> list:
    """The picked patches predicted again (one batch) and made ready to draw."""
    from unet.figures import PatchView, stretch

    chosen = [(group, int(i)) for group, indices in picks.items() for i in indices]
    images = np.stack([read_image(samples[i].image) for _, i in chosen])
    prob = np.asarray(model(normalize(images, bundle), training=False), np.float32)[..., 0]
    rgb = rgb_bands(bundle.bands)
    views = []
    for (group, i), image, p in zip(chosen, images, prob, strict=True):
        truth, pred = read_mask(samples[i].mask) > 0, p >= threshold
        f1 = patch_f1(patch_counts(truth[None], p[None], threshold))[0]
        views.append(PatchView(samples[i].image.name, group, stretch(image[..., rgb]), truth,
                               pred, float(f1)))
    return views


def write_evaluation_figure(path: str | Path, model: keras.Model, bundle: Bundle,
                            samples: Sequence[Sample], result: SplitResult, split: str,
                            per_group: int = 4) -> Path:
    """The evaluation figure of a split (unet.figures.draw_evaluation) as the PNG ``path``."""
    from unet.figures import draw_evaluation

    s = result.summary()
    title = (f"{split}: precision {s['precision']:.3f}, recall {s['recall']:.3f}, "
             f"F1 {s['f1']:.3f}, IoU {s['iou']:.3f} at threshold {s['threshold']:.3f} "
             f"({s['tiles']} patches; model {bundle.model_id})")
    views = patch_views(model, bundle, samples, pick_patches(result.counts, per_group),
                        result.threshold)
    curve = precision_recall_curve(result.pos_hist, result.neg_hist)
    try:
        return draw_evaluation(path, title, curve, (s["recall"], s["precision"], s["threshold"]),
                               views)
    except OSError as exc:
        raise UnetError(f"{path}: cannot write the figure ({exc.strerror or exc})") from exc
