"""Unusable pixels (issue 13): clouds, shadows, cirrus, snow and no data become nodata in every
output, never a landslide.

A mask is one band of one raster: an L2A product's own scene classification
(``GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2``, found automatically) or ``--mask FILE`` (any
raster in any CRS, for any input; it overrides a product's SCL). It is read onto the scene's
10 m grid with NEAREST resampling through the same reader as the bands (``tiler.blocks``), and a
pixel whose mask value is one of the excluded values, or where the mask has no data, gets
``valid`` = 0 when its block is tiled. Every block also counts its scene pixels per mask value
(``MaskSource.buckets``), stored with the block (``tiler.store``), which gives the share of the
scene each class took (``tiler.store.mask_shares``).

L1C products have no SCL: they are tiled unmasked and the note says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from common.errors import InputError
from common.paths import resolved
from tiler.grid import Grid

SCL_CLASSES: dict[int, str] = {
    0: "no data", 1: "saturated or defective", 2: "dark area / topographic shadow",
    3: "cloud shadow", 4: "vegetation", 5: "not vegetated", 6: "water", 7: "unclassified",
    8: "cloud medium probability", 9: "cloud high probability", 10: "thin cirrus",
    11: "snow or ice",
}
"""Sentinel-2 L2A scene classification (SCL, 20 m, uint8)."""
SCL_EXCLUDED: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
"""SCL classes that cannot be mapped: no data, saturated/defective, cloud shadow, cloud medium
and high probability, thin cirrus, snow. The default of ``--mask-values``."""
OTHER, NO_MASK = "other", "nodata"
"""Count buckets after the counted values: any other value, and no mask data (outside the
mask's footprint, or its nodata value): such pixels are excluded too."""
COVER_TOLERANCE_M = 60.0
"""A mask must cover the scene's footprint on the grid to one 60 m pixel."""
BYTE_DTYPES = ("uint8", "int8")


@dataclass(frozen=True)
class MaskSource:
    """Where the mask is and what it excludes; ``counted`` are the values counted per block
    (SCL: 0..11; a byte raster: all 256 values; else the excluded values)."""

    kind: str  # "scl" or "file"
    path: str
    excluded: tuple[float, ...]
    counted: tuple[float, ...]
    index: int = 1
    nodata: float | None = None

    @property
    def buckets(self) -> tuple[str, ...]:
        """Names of the per-block counts: each counted value, then OTHER, then NO_MASK."""
        return (*(value_name(v) for v in self.counted), OTHER, NO_MASK)

    def record(self) -> dict:
        return {"kind": self.kind, "path": self.path,
                "excluded_values": [_plain(v) for v in self.excluded],
                "counted_values": [_plain(v) for v in self.counted], "nodata": self.nodata,
                "buckets": list(self.buckets)}


def _plain(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def value_name(v: float) -> str:
    """A mask value as a key of ``mask_shares``: '3', '0.5'."""
    return str(_plain(v))


def parse_values(text: str) -> tuple[float, ...]:
    """'3,8,9' -> (3.0, 8.0, 9.0); ValueError (one line) on anything else."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"{text!r} is not a comma-separated list of numbers (e.g. 3,8,9)")
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{p!r} in {text!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{p!r} in {text!r} is not a finite number")
        values.append(v)
    return tuple(sorted(set(values)))


def scl_mask(path: Path, values: Sequence[float] | None) -> MaskSource:
    """An L2A product's SCL file as the mask (``values``: the classes to exclude)."""
    excluded = tuple(sorted(set(values))) if values else tuple(float(v) for v in SCL_EXCLUDED)
    with _open(path) as ds:
        if ds.count != 1:
            raise InputError(f"{path}: the SCL raster has {ds.count} bands, expected 1")
        check_values_fit(path, ds.dtypes[0], excluded)
        _check_readable(ds, path)
    return MaskSource("scl", str(path), excluded, tuple(float(c) for c in SCL_CLASSES))


def file_mask(path: str | Path, values: Sequence[float] | None, grid: Grid,
              region: tuple[float, float, float, float]) -> MaskSource:
    """``--mask FILE``: one band, any CRS, covering ``region`` (the scene's footprint on
    ``grid``, in its CRS). ``values``: excluded values (None: ``SCL_EXCLUDED``)."""
    path = resolved(path, "--mask", InputError)
    if path.is_dir():
        raise InputError(f"{path}: --mask is a folder, not a raster: give the mask file itself "
                         f"(e.g. the product's R20m/..._SCL_20m.jp2)")
    if not path.is_file():
        raise InputError(f"{path}: mask file does not exist")
    excluded = tuple(sorted(set(values))) if values else tuple(float(v) for v in SCL_EXCLUDED)
    with _open(path) as ds:
        if ds.count != 1:
            raise InputError(f"{path}: the mask has {ds.count} bands, expected 1 (one value "
                             f"per pixel, e.g. an SCL raster)")
        if ds.crs is None:
            raise InputError(f"{path}: the mask has no CRS")
        t = ds.transform
        if t.is_identity or t.b != 0 or t.d != 0:
            raise InputError(f"{path}: the mask is not georeferenced on a north-up grid")
        dtype = ds.dtypes[0]
        check_values_fit(path, dtype, excluded)
        nodata = ds.nodata if ds.nodata is not None and math.isfinite(ds.nodata) else None
        dst = CRS.from_wkt(grid.crs_wkt)
        b = tuple(ds.bounds) if ds.crs == dst else transform_bounds(ds.crs, dst, *ds.bounds,
                                                                    densify_pts=21)
        _check_readable(ds, path)
    tol = COVER_TOLERANCE_M
    if not (b[0] <= region[0] + tol and b[1] <= region[1] + tol and b[2] >= region[2] - tol
            and b[3] >= region[3] - tol):
        raise InputError(f"{path}: the mask does not cover the scene (mask bounds "
                         f"{_fmt(b)} vs scene {_fmt(region)} in the scene's CRS)")
    if dtype == "uint8":
        counted = tuple(float(v) for v in range(256))
    elif dtype == "int8":
        counted = tuple(float(v) for v in range(-128, 128))
    else:
        counted = excluded
    return MaskSource("file", str(path), excluded, counted, 1, nodata)


def check_values_fit(path: str | Path, dtype: str, values: Sequence[float]) -> None:
    """Refuse (InputError) mask values that a mask of ``dtype`` cannot hold: they could never
    match, and the mask would silently mask nothing (--mask-values 300 on a uint8 SCL)."""
    kind = np.dtype(dtype)
    if np.issubdtype(kind, np.integer):
        info = np.iinfo(kind)
        bad = [v for v in values if not (float(v).is_integer() and info.min <= v <= info.max)]
        holds = f"whole numbers from {info.min} to {info.max}"
    else:
        bad = [v for v in values if abs(v) > np.finfo(kind).max]
        holds = f"at most {np.finfo(kind).max:g} in size"
    if bad:
        shown = ",".join(value_name(v) for v in bad)
        raise InputError(f"{path}: --mask-values {shown}: a {kind} mask cannot hold "
                         f"{'this value' if len(bad) == 1 else 'these values'} ({holds}), so "
                         f"{'it' if len(bad) == 1 else 'they'} would mask nothing")


def unused_values_note(mask: MaskSource, block: int = 1024) -> str | None:
    """A one-line note when no pixel of the mask holds one of its excluded values (it then
    masks nothing but its own no data), else None. Reads the mask block by block and stops at
    the first block holding one."""
    with _open(mask.path) as ds:
        wanted = np.asarray(mask.excluded, dtype="float64")
        for row in range(0, ds.height, block):
            for col in range(0, ds.width, block):
                window = Window(col, row, min(block, ds.width - col),
                                                 min(block, ds.height - row))
                if np.isin(_read(ds, window, mask.path), wanted).any():
                    return None
    shown = ",".join(value_name(v) for v in mask.excluded)
    return (f"{mask.path}: no pixel of the mask has one of the values {shown} "
            f"(--mask-values): it masks nothing")


def _read(ds: rasterio.DatasetReader, window: Window,
          path: str | Path) -> np.ndarray:
    try:
        return ds.read(1, window=window)
    except RasterioError as exc:
        first = (str(exc).splitlines() or ["read error"])[0]
        raise InputError(f"{path}: cannot read the mask (truncated or corrupt file? "
                         f"{first})") from None


def _open(path: str | Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        first = (str(exc).splitlines() or ["cannot be opened"])[0]
        raise InputError(f"{path}: the mask is not a readable raster ({first})") from None


def _check_readable(ds: rasterio.DatasetReader, path: Path) -> None:
    """One small decimated read, so a truncated mask is refused before any store exists."""
    try:
        ds.read(1, out_shape=(min(ds.height, 64), min(ds.width, 64)))
    except RasterioError as exc:
        first = (str(exc).splitlines() or ["read error"])[0]
        raise InputError(f"{path}: cannot read the mask (truncated or corrupt file? "
                         f"{first})") from None


def _fmt(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in b) + ")"


def apply_mask(values: np.ndarray, mask: MaskSource,
               scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(excluded bool, counts int64) for one block: ``values`` float (NaN = no mask data) read
    onto the block; ``scene`` bool marks the block's pixels inside the unpadded scene, the
    only ones counted (``counts`` follows ``mask.buckets``)."""
    nodata = ~np.isfinite(values)
    excluded = nodata | np.isin(values, np.asarray(mask.excluded, dtype=values.dtype))
    inside = values[scene & ~nodata]
    counted = np.asarray(mask.counted, dtype=values.dtype)
    order = np.argsort(counted)
    pos = np.searchsorted(counted[order], inside)
    pos = np.minimum(pos, len(counted) - 1)
    hit = counted[order][pos] == inside
    counts = np.zeros(len(counted) + 2, dtype=np.int64)
    np.add.at(counts, order[pos[hit]], 1)
    counts[-2] = int((~hit).sum())
    counts[-1] = int((scene & nodata).sum())
    return excluded, counts


def shares(counts: np.ndarray, mask: dict) -> dict:
    """``mask_shares``' answer from the summed counts and the store's mask record."""
    buckets = mask.get("buckets") or []
    total = int(counts.sum())
    out = {"kind": mask.get("kind"), "path": mask.get("path"),
           "excluded_values": mask.get("excluded_values", []), "shares": {},
           "masked_share": 0.0, "note": mask.get("note")}
    if not buckets or total == 0:
        return out
    excluded = {value_name(v) for v in mask.get("excluded_values", [])} | {NO_MASK}
    counted = set(buckets[:-2])
    sh = {}
    for name, n in zip(buckets, counts.tolist(), strict=True):
        # SCL: every class, even an absent one; other rasters: the values present
        every = mask.get("kind") == "scl" and name in counted
        if n or every or (name in excluded and name != NO_MASK):
            sh[name] = n / total
    out["shares"] = sh
    out["masked_share"] = sum(n for name, n in zip(buckets, counts.tolist(), strict=True)
                              if name in excluded) / total
    return out


def join_notes(*notes: str | None) -> str | None:
    """The notes given, on one line ('; ' between them), or None when there is none."""
    return "; ".join(n for n in notes if n) or None
