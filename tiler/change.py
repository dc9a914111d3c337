"""Pre-event change evidence: the relative difference of NDVI, as HazMapper computes it.

NDVI = (B8 - B4) / (B8 + B4); rdNDVI = (NDVI_post - NDVI_pre) / sqrt(NDVI_post + NDVI_pre + 1).
A landslide strips vegetation: strongly negative rdNDVI. Ground that was already bare before
the event (an old scar, a field, rock) stays near 0, which is what tells it from a new
landslide that looks the same in the post-event image alone. Computed per pixel on the post-event
scene's 10 m grid (the pre-event scene is tiled onto that grid); NaN wherever either image is
nodata or unusable (clouds of either date), or the formula is undefined.
"""

from __future__ import annotations

import numpy as np

LAYERS = ("ndvi_pre", "ndvi_post", "rdndvi")
"""The bands of the store's ``change`` array, in order."""


def ndvi(image: np.ndarray, valid: np.ndarray, bands: list[str]) -> np.ndarray:
    """NDVI of a (bands, h, w) block in reflectance; NaN where invalid or B8 + B4 <= 0."""
    b4 = image[bands.index("B4")].astype(np.float32)
    b8 = image[bands.index("B8")].astype(np.float32)
    total = b8 + b4
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (b8 - b4) / total
    out[(valid == 0) | ~(total > 0)] = np.nan
    return out


def rdndvi(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """(post - pre) / sqrt(post + pre + 1); NaN where either is NaN or the root is undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(post + pre + 1.0)
        out = (post - pre) / root
    out[~(root > 0)] = np.nan
    return out.astype(np.float32)


def change_block(post: np.ndarray, post_valid: np.ndarray, pre: np.ndarray,
                 pre_valid: np.ndarray, bands: list[str]) -> np.ndarray:
    """The ``change`` layers (ndvi_pre, ndvi_post, rdndvi) of one block, float32 (3, h, w)."""
    both = (post_valid == 1) & (pre_valid == 1)
    n_pre = ndvi(pre, both, bands)
    n_post = ndvi(post, both, bands)
    return np.stack([n_pre, n_post, rdndvi(n_pre, n_post)])
