"""The U-Net, its loss and metrics against NumPy references."""

import keras
import numpy as np
import pytest

from unet.loss import LandslideLoss, landslide_loss
from unet.metrics import (
    LandslideF1,
    LandslideIoU,
    LandslidePrecision,
    LandslideRecall,
    best_threshold,
    confusion_counts,
    probability_histograms,
    scores,
)
from unet.model import build_unet


def _sample(seed=0, shape=(3, 16, 16)):
    rng = np.random.default_rng(seed)
    y = (rng.random(shape) < 0.2).astype(np.float32)
    p = np.clip(0.6 * y + 0.5 * rng.random(shape), 0, 1).astype(np.float32)
    return y, p


def _np_loss(y, p, pos_weight, bce_weight, jaccard_weight, smooth):
    y = y.reshape(len(y), -1).astype(np.float64)
    p = p.reshape(len(p), -1).astype(np.float64)
    q = np.clip(p, 1e-7, 1 - 1e-7)
    bce = -(pos_weight * y * np.log(q) + (1 - y) * np.log(1 - q)).mean(axis=1)
    inter = (y * p).sum(axis=1)
    jac = 1 - (inter + smooth) / (y.sum(axis=1) + p.sum(axis=1) - inter + smooth)
    return bce_weight * bce + jaccard_weight * jac


def test_loss_matches_numpy_per_sample():
    y, p = _sample()
    got = np.asarray(landslide_loss(y, p[..., None], 4.0, 0.7, 1.3, 1.0))
    assert got.shape == (3,)
    np.testing.assert_allclose(got, _np_loss(y, p, 4.0, 0.7, 1.3, 1.0), rtol=1e-5)


def test_loss_class_reduces_and_roundtrips_config():
    y, p = _sample(1)
    loss = LandslideLoss(pos_weight=2.0, jaccard_weight=0.5)
    expected = _np_loss(y, p, 2.0, 1.0, 0.5, 1.0).mean()
    np.testing.assert_allclose(float(loss(y[..., None], p[..., None])), expected, rtol=1e-5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(again, LandslideLoss) and again.get_config() == loss.get_config()


def test_scores_and_zero_division():
    assert scores(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0}
    s = scores(6, 2, 4)
    assert s["precision"] == 6 / 8 and s["recall"] == 6 / 10
    assert s["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35) and s["iou"] == 6 / 12


def test_keras_metrics_sum_counts_over_batches():
    batches = [_sample(s) for s in range(3)]
    # one batch without any landslide: a per-batch mean would be wrong
    batches.append((np.zeros((3, 16, 16), np.float32), batches[0][1]))
    tp = fp = fn = 0
    for y, p in batches:
        a, b, c = confusion_counts(y, p, 0.5)
        tp, fp, fn = tp + a, fp + b, fn + c
    ref = scores(tp, fp, fn)
    for cls, key in ((LandslidePrecision, "precision"), (LandslideRecall, "recall"),
                     (LandslideF1, "f1"), (LandslideIoU, "iou")):
        metric = cls()
        for y, p in batches:
            metric.update_state(y[..., None], p[..., None])
        assert float(metric.result()) == pytest.approx(ref[key], rel=1e-6), key
        metric.reset_state()
        assert float(metric.result()) == 0.0


def test_histogram_threshold_equals_brute_force():
    y, p = _sample(2, (4, 32, 32))
    bins = 200
    pos, neg = probability_histograms(y, p, bins)
    # accumulating over two halves gives the same histograms
    pos1, neg1 = probability_histograms(y[:2], p[:2], bins)
    pos2, neg2 = probability_histograms(y[2:], p[2:], bins)
    np.testing.assert_array_equal(pos, pos1 + pos2)
    np.testing.assert_array_equal(neg, neg1 + neg2)
    t, best = best_threshold(pos, neg)
    brute = {k / bins: scores(*confusion_counts(y, p, k / bins))["f1"] for k in range(1, bins)}
    t_ref = max(brute, key=lambda k: (brute[k], -k))
    assert best["f1"] == pytest.approx(brute[t_ref])
    assert t == pytest.approx(t_ref)
    assert best == pytest.approx(scores(*confusion_counts(y, p, t)))


@pytest.mark.parametrize("size", [(32, 32), (48, 80)])
def test_unet_shapes_any_multiple_of_two_to_the_depth(size):
    model = build_unet(bands=5, base_width=4, depth=2)
    x = np.random.default_rng(0).standard_normal((2, *size, 5)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, *size, 1) and y.dtype == np.float32
    assert np.all((y >= 0) & (y <= 1))


def test_unet_mixed_bfloat16_runs_a_step():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_unet(bands=3, base_width=4, depth=2)
        assert model.layers[-1].dtype_policy.compute_dtype == "float32"
        model.compile(optimizer="adam", loss=LandslideLoss())
        x = np.zeros((2, 16, 16, 3), np.float32)
        y = np.zeros((2, 16, 16, 1), np.float32)
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss)
        assert model(x).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
