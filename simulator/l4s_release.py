"""The simulator's declared conversion between ``s2-reflectance-v1`` and ``l4s-release`` units.

The Landslide4Sense release stores each band divided by a dataset-wide scale (per-band means
about 1; see ``tiler/bands.py`` and the shared notes). Its authors do not publish those scales,
so ``L4S_RELEASE_SCALE`` is NOT the real release's conversion: it is this simulator's declared
one, which lets synthetic data imitate the release's units and tests check code paths that
handle them. Never use it to convert real data.

How the scales were chosen: the per-band means of valid pixels of four synthetic scenes
(``write_scene``, 800 x 800, seeds 0..3), averaged, were about

    B1 0.073  B2 0.077  B3 0.096  B4 0.083  B5 0.121  B6 0.206  B7 0.241  B8 0.260
    B9 0.094  B10 0.0066  B11 0.190  B12 0.117  slope 24 deg  DEM 1570 m

and each scale is the power of two nearest (on a log scale) to that mean, so the converted
means lie between about 0.7 and 1.4 (the real release's measured means: 0.99..1.67, B10 4.06).
Powers of two make the conversion exact in float32 both ways: ``from_l4s_release(
to_l4s_release(x)) == x`` bit for bit, so products derived from a converted stack are the
same as from the reflectance one. Clouds reach about 30 in B10, as the release's B10 reaches 50.
"""

import numpy as np

from tiler.bands import BANDS

L4S_RELEASE_SCALE: tuple[float, ...] = (
    2.0**-4, 2.0**-4, 2.0**-3, 2.0**-4, 2.0**-3, 2.0**-2, 2.0**-2, 2.0**-2,  # B1..B8
    2.0**-3, 2.0**-7, 2.0**-2, 2.0**-3,  # B9, B10, B11, B12 (reflectance per release unit)
    2.0**5,  # slope: degrees per release unit
    2.0**11,  # DEM: metres per release unit
)
"""Per band (``BANDS`` order): the ``s2-reflectance-v1`` value of one ``l4s-release`` unit."""

_SCALE = np.asarray(L4S_RELEASE_SCALE, dtype=np.float32)


def _check(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3 or a.shape[0] != len(BANDS):
        raise ValueError(f"expected a channels-first ({len(BANDS)}, H, W) image, got shape "
                         f"{a.shape}")
    return a


def to_l4s_release(image: np.ndarray) -> np.ndarray:
    """A ``(14, H, W)`` image in ``s2-reflectance-v1`` as float32 ``l4s-release`` units (a
    new array): each band divided by its ``L4S_RELEASE_SCALE``; NaN stays NaN."""
    return _check(image) / _SCALE[:, None, None]


def from_l4s_release(image: np.ndarray) -> np.ndarray:
    """The inverse of ``to_l4s_release``: a ``(14, H, W)`` float32 image back in
    ``s2-reflectance-v1`` (each band times its scale; NaN stays NaN)."""
    return _check(image) * _SCALE[:, None, None]
