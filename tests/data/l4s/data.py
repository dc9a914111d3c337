"""A small, learnable, seeded dataset in the Landslide4Sense layout, for the unet tests.

Each patch is noise with a per-band offset; about half the patches carry one bright elongated
blob (an ellipse at a random angle) in several bands, and the blob's pixels are the mask.
Run as a script to make one on disk: python tests/data/l4s/data.py OUT [--n-train N].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

BANDS = [f"B{i}" for i in range(1, 13)] + ["slope", "DEM"]
BLOB_BANDS = (3, 4, 7, 10, 12)


def make_patch(rng: np.random.Generator, size: int, bands: int = 14):
    """(image float64 (size, size, bands), mask uint8 (size, size))."""
    offsets = np.linspace(0.5, 1.5, bands)
    image = offsets + 0.3 * rng.standard_normal((size, size, bands))
    mask = np.zeros((size, size), np.uint8)
    if rng.random() < 0.6:
        cy, cx = rng.uniform(size * 0.2, size * 0.8, 2)
        a = rng.uniform(size * 0.12, size * 0.3)
        b = rng.uniform(size * 0.04, size * 0.08)
        t = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:size, :size]
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        mask = ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.uint8)
        for band in BLOB_BANDS:
            if band < bands:
                image[..., band] += 1.2 * mask
    return image, mask


def write_h5(path: str | Path, key: str, array) -> Path:
    """Write one array under `key` (replacing the file): to plant a bad patch in a dataset."""
    with h5py.File(path, "w") as f:
        f[key] = np.asarray(array)
    return Path(path)


def write_split(root: Path, split: str, n: int, rng, size: int, dtype, masks: bool, start=1):
    (root / split / "img").mkdir(parents=True, exist_ok=True)
    if masks:
        (root / split / "mask").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        image, mask = make_patch(rng, size)
        write_h5(root / split / "img" / f"image_{i}.h5", "img", image.astype(dtype))
        if masks:
            write_h5(root / split / "mask" / f"mask_{i}.h5", "mask", mask)


def make_l4s(
    root: str | Path,
    n_train: int = 24,
    n_valid: int = 8,
    n_test: int = 0,
    size: int = 32,
    dtype=np.float64,
    valid_masks: bool = True,
    seed: int = 0,
    convention: str | None = None,
) -> Path:
    """Write the dataset under root; returns root. convention: also write dataset.json."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    write_split(root, "TrainData", n_train, rng, size, dtype, True)
    if n_valid:
        write_split(root, "ValidData", n_valid, rng, size, dtype, valid_masks)
    if n_test:
        write_split(root, "TestData", n_test, rng, size, dtype, False)
    if convention:
        (root / "dataset.json").write_text(json.dumps({"convention": convention, "bands": BANDS}))
    return root


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-valid", type=int, default=50)
    p.add_argument("--size", type=int, default=128)
    a = p.parse_args()
    make_l4s(a.out, a.n_train, a.n_valid, size=a.size, dtype=np.float32,
             convention="s2-reflectance-v1")
