"""Score a model bundle on a whole scene with a truth raster (the simulator's scenes).

A model is chosen for how it maps scenes it has never seen, not for its F1 on patches like its
training patches: this is the measurement (`bench.training` generalisation table). The scene is
predicted window by window with a halo of context (as a scene job does), thresholded at the
bundle's threshold and compared with the truth over the valid pixels. No Dask, no tile store:
the model and the truth only, so the figure is the model's and not the pipeline's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.windows import Window

from unet.bundle import load_bundle
from unet.metrics import scores
from unet.predict import normalized_window, predict_window

TRUTH_NODATA = 255
SMALL_PX = 10
"""Landslides under this many pixels are "small" (reported apart: they are the first missed)."""


def predict_scene(model_dir: str | Path, scene: str | Path, window: int = 512,
                  halo: int = 32) -> tuple[np.ndarray, float]:
    """(probabilities float32 (H, W), the bundle's threshold) of a 14-band scene GeoTIFF in the
    bundle's convention; NaN pixels are nodata (fed as 0, as the scene job does). Each window
    goes through the scene job's own input preparation and predictor (``unet.predict``)."""
    model, bundle = load_bundle(model_dir)
    infer = lambda x: model(x, training=False)  # noqa: E731
    step = 2 ** int(bundle.model.get("depth", 4))
    with rasterio.open(scene) as src:
        height, width = src.height, src.width
        prob = np.zeros((height, width), np.float32)
        for r in range(0, height, window):
            for c in range(0, width, window):
                h, w = min(window, height - r), min(window, width - c)
                r0, c0 = max(r - halo, 0), max(c - halo, 0)
                r1, c1 = min(r + h + halo, height), min(c + w + halo, width)
                img = src.read(window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float32)
                ok = np.all(np.isfinite(img), axis=0)
                ph, pw = -(-img.shape[1] // step) * step, -(-img.shape[2] // step) * step
                pad = ((0, 0), (0, ph - img.shape[1]), (0, pw - img.shape[2]))
                x = normalized_window(np.pad(np.nan_to_num(img), pad),
                                      np.pad(ok, pad[1:]), bundle)
                p = predict_window(infer, x)
                prob[r:r + h, c:c + w] = p[r - r0:r - r0 + h, c - c0:c - c0 + w]
    return prob, float(bundle.threshold)


def score_scene(model_dir: str | Path, scene_dir: str | Path) -> dict:
    """Precision, recall, F1, IoU of the bundle's mask against ``truth.tif`` over the valid
    pixels of ``scene.tif`` (both in ``scene_dir``), and the recall of the pixels of small
    landslides (connected truth regions under ``SMALL_PX`` pixels)."""
    scene_dir = Path(scene_dir)
    prob, threshold = predict_scene(model_dir, scene_dir / "scene.tif")
    with rasterio.open(scene_dir / "truth.tif") as src:
        truth = src.read(1)
    valid = truth != TRUTH_NODATA
    t = (truth == 1) & valid
    pred = (prob >= threshold) & valid
    tp = int(np.count_nonzero(t & pred))
    out = scores(tp, int(np.count_nonzero(pred & ~t)), int(np.count_nonzero(t & ~pred)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(t.astype(np.uint8), connectivity=8)
    small = np.isin(labels, np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < SMALL_PX)[1:]) & t
    n_small = int(np.count_nonzero(small))
    out.update(threshold=threshold, landslides=n - 1, small_landslides=int(
        np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] < SMALL_PX)),
        small_recall=(int(np.count_nonzero(small & pred)) / n_small) if n_small else None)
    return out
