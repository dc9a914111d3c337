"""Pre-event change evidence: the relative difference of NDVI, as HazMapper computes it.

NDVI = (B8 - B4) / (B8 + B4); rdNDVI = (NDVI_post - NDVI_pre) / sqrt(NDVI_post + NDVI_pre + 1).
A landslide strips vegetation: strongly negative rdNDVI. Ground that was already bare before
the event (an old scar, a field, rock) stays near 0, which is what tells it from a new
landslide that looks the same in the post-event image alone. Computed per pixel on the post-event
scene's 10 m grid (the pre-event scene is tiled onto that grid); NaN wherever either image is
nodata or unusable (clouds of either date), or the formula is undefined.

``--require-vegetation-loss X`` keeps a landslide only on evidence of lost vegetation
(``vegetation_evidence``): it was vegetated before (mean NDVI_pre >= ``VEGETATED_NDVI``) and its
mean rdNDVI is at most -X. A polygon whose pre-event pixels give an undefined rdNDVI, or show no
vegetation, cannot have lost any and is dropped; only a polygon without any usable pre-event
pixel (clouds or no data on either date under all of it) is kept, marked ``change_evidence``
"none" (the others "loss").

NDVI is a ratio of reflectances: it is computed only on stores in ``s2-reflectance-v1``
(``check_ndvi_convention``); the Landslide4Sense release's units divide each band by its own
unpublished scale, which changes NDVI.
"""

from __future__ import annotations

import numpy as np

from common.errors import InputError
from tiler.bands import CONVENTION

LAYERS = ("ndvi_pre", "ndvi_post", "rdndvi")
"""The bands of the store's ``change`` array, in order."""
VEGETATED_NDVI = 0.2
"""Mean pre-event NDVI from which ground counts as vegetated. Bare soil, rock, debris, built-up
ground and water lie below about 0.2, green vegetation above (sparse 0.2-0.5, dense 0.6-0.9):
0.2 is the usual soil/vegetation limit of NDVI threshold methods (e.g. Sobrino et al. 2004's
NDVI_s = 0.2 for land surface emissivity), and in the simulator's spectra
(``simulator/spectra.py``) bare soil and old scars sit at about 0.17 or below, vegetation at
0.6-0.85."""
LOSS, NO_EVIDENCE = "loss", "none"
"""``change_evidence`` of a landslide kept by --require-vegetation-loss: vegetation loss seen,
or no usable pre-event pixel under it (kept: no evidence either way)."""


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


def vegetation_evidence(usable: np.ndarray, ndvi_pre: np.ndarray, rd: np.ndarray,
                        require_loss: float) -> np.ndarray:
    """Per polygon: LOSS (kept), NO_EVIDENCE (kept: ``usable`` is 0) or "" (dropped).

    ``usable``: the polygon's pixels with both dates usable (a defined NDVI on either date);
    ``ndvi_pre``, ``rd``: its mean NDVI_pre and rdNDVI over the pixels where each is defined
    (NaN: nowhere). Dropped: rdNDVI undefined, not vegetated before, or rdNDVI above -X.
    """
    with np.errstate(invalid="ignore"):
        lost = (np.asarray(ndvi_pre) >= VEGETATED_NDVI) & (np.asarray(rd) <= -require_loss)
    none = np.asarray(usable) == 0
    return np.where(none, NO_EVIDENCE, np.where(lost, LOSS, ""))


def check_ndvi_convention(convention: str, where: str) -> None:
    """InputError naming ``where`` unless a store in ``convention`` holds reflectance, which
    NDVI (and so --pre) needs."""
    if convention != CONVENTION:
        raise InputError(f"{where}: holds {convention!r} bands, not reflectance "
                         f"({CONVENTION!r}): NDVI cannot be computed from it, so --pre cannot "
                         f"be used; give the scene as a SAFE product, band files or a "
                         f"reflectance stack")
