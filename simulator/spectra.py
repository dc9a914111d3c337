"""Sentinel-2 reflectance spectra (B1..B12, reflectance 0..1) of the simulated surfaces.

Values follow typical library spectra resampled to the MSI bands (443, 490, 560, 665, 705, 740,
783, 842, 945, 1375, 1610, 2190 nm). What matters for the task:
- vegetation: low red, steep red edge (B5-B7), NIR plateau (B8) -> NDVI 0.6-0.85;
- bare field soil: brown, rising visible, HIGH SWIR (B11 > B8, B12 high: dry tilled soil);
- rock / scree: grey, flat spectrum, NDVI < 0.1;
- fresh landslide debris: freshly exposed, moist soil and shattered rock mixed with torn
  vegetation: brighter and redder in the visible than rock (B4/B2 ~1.8 vs 1.2), with a NIR
  shoulder (NDVI ~0.17, like the soil), but lower SWIR than the dry fields (B11/B8 ~1.05 vs
  1.45, B12/B11 ~0.7 vs 0.85): separable with several bands, not with NDVI alone;
- water: dark, NIR and SWIR near 0; cloud: bright and flat, B10 (cirrus, 1375 nm) high, while
  B10 is near 0 over every clear surface.
"""

import numpy as np

CLASSES: tuple[str, ...] = ("forest", "crop", "grass", "soil", "rock", "debris", "water")

#                  B1     B2     B3     B4     B5     B6     B7     B8     B9     B10    B11    B12
_TABLE = np.array([
    [0.025, 0.030, 0.055, 0.030, 0.085, 0.230, 0.290, 0.320, 0.110, 0.004, 0.160, 0.075],  # forest
    [0.030, 0.040, 0.080, 0.045, 0.120, 0.320, 0.400, 0.430, 0.150, 0.004, 0.220, 0.110],  # crop
    [0.040, 0.050, 0.085, 0.070, 0.130, 0.230, 0.270, 0.290, 0.100, 0.004, 0.260, 0.150],  # grass
    [0.070, 0.090, 0.125, 0.165, 0.195, 0.215, 0.230, 0.245, 0.090, 0.004, 0.360, 0.300],  # soil
    [0.130, 0.150, 0.165, 0.180, 0.190, 0.195, 0.200, 0.205, 0.080, 0.004, 0.230, 0.200],  # rock
    [0.085, 0.110, 0.150, 0.200, 0.235, 0.255, 0.270, 0.285, 0.110, 0.004, 0.300, 0.215],  # debris
    [0.050, 0.045, 0.040, 0.025, 0.018, 0.014, 0.012, 0.010, 0.004, 0.002, 0.005, 0.003],  # water
], dtype=np.float32)

CLOUD = np.array([0.52, 0.51, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.32, 0.25, 0.42, 0.30],
                 dtype=np.float32)
"""Thick cumulus with cirrus above it (high B10)."""

HAZE = np.array([0.020, 0.015, 0.010, 0.006, 0.004, 0.003, 0.002, 0.002, 0.001, 0.0, 0.0, 0.0],
                dtype=np.float32)
"""Additive path radiance (residual after correction), strongest in the blue."""

NOISE_STD = np.array([0.006, 0.005, 0.005, 0.005, 0.006, 0.006, 0.006, 0.006, 0.008, 0.002,
                      0.007, 0.007], dtype=np.float32)
"""Per-band sensor noise (reflectance units)."""


def spectrum(name: str) -> np.ndarray:
    """The 12-band reflectance of one surface class (a copy)."""
    return _TABLE[CLASSES.index(name)].copy()
