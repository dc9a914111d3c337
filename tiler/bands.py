"""The project's one band order and radiometric convention.

Every scene that enters the tiler is converted to this convention, the simulator writes it, and
the model bundle records the convention its model was trained on, so inference can refuse a
mismatch instead of silently predicting garbage.

Convention ``s2-reflectance-v1``:
- B1..B12 (Sentinel-2 MSI, without B8A): reflectance as a unitless float in [0, 1]
  (surface reflectance for L2A, top-of-atmosphere for L1C), i.e. (DN + offset) / quantification;
- slope: degrees from horizontal (0..90), Horn's method on the 10 m grid;
- DEM: metres above sea level.

The Landslide4Sense release is NOT in this convention (its bands are divided by dataset-wide
scales, per-band means about 1); data read from it are labelled ``l4s-release``.
"""

BANDS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "slope", "DEM",
)
SPECTRAL: tuple[str, ...] = BANDS[:12]
CONVENTION = "s2-reflectance-v1"
L4S_RELEASE_CONVENTION = "l4s-release"
TILE = 128
"""Tile edge in pixels: one Zarr chunk holds all bands of one tile."""
BLOCK = 1024
"""Shard edge in pixels (8 x 8 tiles): the unit of one Dask task, so no two tasks share a shard."""
CONVENTIONS: tuple[str, ...] = (CONVENTION, L4S_RELEASE_CONVENTION)
"""The conventions a store may hold: the tiler converts scenes to CONVENTION, and stores a stack
declared (``--convention`` or CONVENTION_TAG) to be in the release's units as it is."""
CONVENTION_TAG = "LANDSLIDE_CONVENTION"
"""GeoTIFF dataset metadata item (default domain) naming the convention a 14-band stack holds:
``jobs.synth scene`` writes it, the tiler honours it; ``--convention`` overrides it."""
