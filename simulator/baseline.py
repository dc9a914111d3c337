"""The NDVI-and-slope threshold baseline: landslide iff NDVI < a and slope > b.

It is what a simple rule on the two most obvious cues achieves, and the simulator is built so
that it does poorly (bare fields, rock, scree and clouds share the cues); the README reports its
validation F1 beside the U-Net's.
"""

import glob
import os
from dataclasses import dataclass

import h5py
import numpy as np

from common.errors import SimulatorError
from tiler.bands import BANDS

_B4, _B8, _SLOPE = BANDS.index("B4"), BANDS.index("B8"), BANDS.index("slope")
NDVI_EDGES = np.round(np.linspace(-1.0, 1.0, 201), 6)
SLOPE_EDGES = np.arange(0.0, 90.5, 0.5)


@dataclass(frozen=True)
class Scores:
    """Pixel counts and scores of the landslide class, summed over a split."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 0.0

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 0.0


def ndvi(b8: np.ndarray, b4: np.ndarray) -> np.ndarray:
    """(B8 - B4) / (B8 + B4), 0 where both are 0."""
    s = b8 + b4
    return np.where(s != 0, (b8 - b4) / np.where(s != 0, s, 1), 0).astype(np.float32)


def load_split(split_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(NDVI, slope, mask) of every pixel of a split, flattened."""
    files = sorted(glob.glob(os.path.join(split_dir, "img", "image_*.h5")))
    if not files:
        raise SimulatorError(f"no image_*.h5 under {os.path.join(split_dir, 'img')}")
    nd, sl, mk = [], [], []
    for f in files:
        i = os.path.basename(f)[len("image_"):-len(".h5")]
        with h5py.File(f, "r") as h:
            img = h["img"][:]
        mask_path = os.path.join(split_dir, "mask", f"mask_{i}.h5")
        if not os.path.exists(mask_path):
            raise SimulatorError(f"{mask_path} is missing")
        with h5py.File(mask_path, "r") as h:
            mk.append(h["mask"][:].ravel())
        nd.append(ndvi(img[..., _B8], img[..., _B4]).ravel())
        sl.append(img[..., _SLOPE].ravel())
    return np.concatenate(nd), np.concatenate(sl), np.concatenate(mk) == 1


def fit_threshold(train_dir: str | os.PathLike) -> tuple[float, float]:
    """Grid search of (a, b) maximising the landslide F1 over the split (counts summed).

    Candidate thresholds are the edges of a 0.01 NDVI x 0.5 degree grid; 2-D histograms make the
    search exact on that grid at the cost of one pass over the pixels.
    """
    nd, sl, mk = load_split(train_dir)
    rng = [NDVI_EDGES, SLOPE_EDGES]
    pos, _, _ = np.histogram2d(np.clip(nd, -1, 1), np.clip(sl, 0, 90), bins=rng, weights=mk)
    tot, _, _ = np.histogram2d(np.clip(nd, -1, 1), np.clip(sl, 0, 90), bins=rng)
    # tp[i, j]: positives with NDVI < edge i+1 and slope >= edge j.
    tp = np.cumsum(pos, axis=0)[:, ::-1].cumsum(axis=1)[:, ::-1]
    pred = np.cumsum(tot, axis=0)[:, ::-1].cumsum(axis=1)[:, ::-1]
    f1 = 2 * tp / np.maximum(pred + mk.sum(), 1)
    i, j = np.unravel_index(np.argmax(f1), f1.shape)
    return float(NDVI_EDGES[i + 1]), float(SLOPE_EDGES[j])


def scores(nd: np.ndarray, sl: np.ndarray, mk: np.ndarray, a: float, b: float) -> Scores:
    """Counts of the rule ``NDVI < a and slope >= b`` against the mask."""
    pred = (nd < a) & (sl >= b)
    tp = int(np.count_nonzero(pred & mk))
    return Scores(tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(mk)) - tp)


def evaluate_threshold(valid_dir: str | os.PathLike, a: float, b: float) -> Scores:
    """Precision, recall, F1 and IoU of the rule on a split."""
    nd, sl, mk = load_split(valid_dir)
    return scores(nd, sl, mk, a, b)
