"""Resolve a tiler input (stacked GeoTIFF, folder of band files, or SAFE product, plus a DEM)
into a ``SceneSpec``: the scene grid and, for each of the 14 bands, where to read it and how to
convert it to the project's convention (``tiler.bands``).

Everything here only reads headers and metadata (plus one small decimated read to catch an
all-nodata scene), so a bad input is refused before any store exists. The spec is a small
picklable dataclass: each Dask task opens the files itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from tiler.bands import BANDS, SPECTRAL, TILE
from tiler.errors import InputError
from tiler.grid import Grid
from tiler.safe import band_of_name, find_metadata, read_safe

log = logging.getLogger(__name__)

B10_FILL_REFLECTANCE = 0.0
"""The one rule for a missing B10 (L2A products have none): a constant clear-sky cirrus
reflectance of 0.0 over the whole scene. Over clear land B10 (1375 nm, water-vapour absorption)
is close to 0; the model cannot learn anything from a constant, and the tiler logs a warning
and records ``b10_filled`` in the store's ``source`` attribute whenever it applies this rule."""

DEFAULT_QUANTIFICATION = 10000.0


@dataclass(frozen=True)
class BandSource:
    """One band of one raster: value = (raw + offset) / quantification; ``nodata`` raw -> NaN."""

    path: str
    index: int = 1
    offset: float = 0.0
    quantification: float = 1.0
    nodata: float | None = None
    resampling: str = "bilinear"


@dataclass(frozen=True)
class SceneSpec:
    """Everything a block task needs. ``bands`` holds the 12 spectral bands (a float is a
    constant fill); ``slope`` is None when it is computed from ``dem`` on the grid."""

    kind: str  # "stack", "bands" or "safe"
    source: str
    grid: Grid
    bands: tuple[BandSource | float, ...]
    dem: BandSource
    slope: BandSource | None
    details: dict = field(default_factory=dict)

    def source_record(self) -> dict:
        """What the store records as its ``source``; ``fingerprint`` decides resume vs refuse."""
        record = {"kind": self.kind, "path": self.source, **self.details}
        record["fingerprint"] = _fingerprint(self)
        return record


def _fingerprint(spec: SceneSpec) -> str:
    files = sorted({b.path for b in (*spec.bands, spec.dem) if isinstance(b, BandSource)})
    stats = []
    for f in files:
        st = os.stat(f)
        stats.append((f, st.st_size, st.st_mtime_ns))
    conv = [asdict(b) if isinstance(b, BandSource) else b for b in spec.bands]
    payload = json.dumps([spec.kind, stats, conv, asdict(spec.dem), asdict(spec.grid)],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _open(path: str | Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "cannot be opened"
        raise InputError(f"{path}: not a readable raster ({msg})") from exc


def _grid_of(ds: rasterio.DatasetReader, path: str | Path) -> Grid:
    if ds.crs is None:
        raise InputError(f"{path}: raster has no CRS")
    t = ds.transform
    if t.is_identity or t.b != 0 or t.d != 0:
        raise InputError(f"{path}: raster is not georeferenced on a north-up grid")
    return Grid(ds.crs.to_wkt(), tuple(t)[:6], ds.height, ds.width)


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _bounds_in(ds: rasterio.DatasetReader, crs_wkt: str) -> tuple:
    dst = CRS.from_wkt(crs_wkt)
    if ds.crs == dst:
        return tuple(ds.bounds)
    return transform_bounds(ds.crs, dst, *ds.bounds, densify_pts=21)


def _all_nodata(raw: np.ndarray, nodata: float | None) -> bool:
    bad = ~np.isfinite(raw)
    if nodata is not None:
        bad |= raw == nodata
    return bool(bad.all())


def _check_not_empty(path: str | Path, src: BandSource, grid: Grid) -> None:
    """Refuse an all-nodata scene. A few small windows usually find data at once; only when
    they do not, one decimated read of the band (overviews for JP2/COG) decides."""
    with _open(path) as ds:
        step_y, step_x = max(ds.height // 8, 1), max(ds.width // 8, 1)
        for y in range(step_y // 2, ds.height, step_y):
            for x in range(step_x // 2, ds.width, step_x):
                win = Window(x, y, min(16, ds.width - x), min(16, ds.height - y))
                raw = ds.read(src.index, window=win).astype("float64")
                if not _all_nodata(raw, src.nodata):
                    return
        shape = (min(ds.height, 512), min(ds.width, 512))
        raw = ds.read(src.index, out_shape=shape).astype("float64")
    if _all_nodata(raw, src.nodata):
        raise InputError(f"{path}: the scene is empty (every pixel is nodata)")


def _stack_spec(path: Path, dem: Path | None) -> SceneSpec:
    with _open(path) as ds:
        if ds.count != len(BANDS):
            raise InputError(
                f"{path}: {ds.count} bands, expected {len(BANDS)} ({', '.join(BANDS)})")
        grid = _grid_of(ds, path)
        nodata = ds.nodata if ds.nodata is not None and np.isfinite(ds.nodata) else None
    if dem is not None:
        log.warning("%s is a stacked scene with its own DEM band: --dem %s is ignored", path, dem)
    srcs = [BandSource(str(path), i + 1, nodata=nodata) for i in range(len(BANDS))]
    _check_not_empty(path, srcs[1], grid)
    return SceneSpec("stack", str(path), grid, tuple(srcs[:12]), srcs[13], srcs[12],
                     {"dem": None})


def _band_sources(files: dict[str, Path], where: Path, offsets: dict[str, float],
                  quantification: float) -> tuple[tuple[BandSource | float, ...], list[str]]:
    missing = [b for b in SPECTRAL if b not in files and b != "B10"]
    if missing:
        raise InputError(f"{where}: missing band file(s) for {', '.join(missing)}")
    out: list[BandSource | float] = []
    for band in SPECTRAL:
        if band not in files:
            out.append(B10_FILL_REFLECTANCE)
            continue
        f = files[band]
        if not f.exists():
            raise InputError(f"{where}: band {band} file is missing: {f}")
        with _open(f) as ds:
            if ds.crs is None:
                raise InputError(f"{f}: band {band} has no CRS")
            integer = np.issubdtype(np.dtype(ds.dtypes[0]), np.integer)
            nodata = ds.nodata
        if integer:
            # Digital numbers: 0 = nodata for Sentinel-2 bands.
            src = BandSource(str(f), 1, offsets.get(band, 0.0), quantification, 0.0)
        else:
            src = BandSource(str(f), 1, 0.0, 1.0,
                             nodata if nodata is not None and np.isfinite(nodata) else None)
        out.append(src)
    filled = [b for b, s in zip(SPECTRAL, out, strict=True) if not isinstance(s, BandSource)]
    return tuple(out), filled


def _check_overlap(bands: tuple, grid: Grid) -> None:
    for band, src in zip(SPECTRAL, bands, strict=True):
        if isinstance(src, BandSource):
            with _open(src.path) as ds:
                if not _overlaps(_bounds_in(ds, grid.crs_wkt), grid.bounds()):
                    raise InputError(f"{src.path}: band {band} does not overlap the scene "
                                     f"grid of B2")


def _dem_source(dem: Path | None, grid: Grid, where: Path) -> BandSource:
    if dem is None:
        raise InputError(f"{where}: per-band and SAFE input need --dem (a DEM raster)")
    with _open(dem) as ds:
        if ds.crs is None:
            raise InputError(f"{dem}: DEM has no CRS")
        nodata = ds.nodata if ds.nodata is not None and np.isfinite(ds.nodata) else None
        b = _bounds_in(ds, grid.crs_wkt)
    s = grid.bounds()
    tol = 0.5 * max(grid.res)
    if not (b[0] <= s[0] + tol and b[1] <= s[1] + tol and b[2] >= s[2] - tol
            and b[3] >= s[3] - tol):
        raise InputError(f"{dem}: the DEM does not cover the scene (DEM bounds {_fmt(b)} vs "
                         f"scene {_fmt(s)} in the scene CRS)")
    return BandSource(str(dem), 1, 0.0, 1.0, nodata)


def _fmt(b: tuple) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in b) + ")"


def _scene_grid(files: dict[str, Path], where: Path) -> Grid:
    b2 = files.get("B2")
    if b2 is None or not b2.exists():
        raise InputError(f"{where}: missing band file for B2 (it defines the scene grid)")
    with _open(b2) as ds:
        return _grid_of(ds, b2)


def _bands_folder_spec(folder: Path, dem: Path | None, offset: float,
                       quantification: float) -> SceneSpec:
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in (".tif", ".tiff", ".jp2"):
            continue
        band = band_of_name(f.name)
        if band is None or band == "B8A":
            continue
        if band in files:
            raise InputError(f"{folder}: two files for band {band}: {files[band].name}, {f.name}")
        files[band] = f
    if not files:
        raise InputError(f"{folder}: no band files (B01..B12 in .tif/.jp2 names) found")
    grid = _scene_grid(files, folder)
    offsets = {b: offset for b in SPECTRAL}
    bands, filled = _band_sources(files, folder, offsets, quantification)
    _check_overlap(bands, grid)
    dem_src = _dem_source(dem, grid, folder)
    _check_not_empty(bands[1].path, bands[1], grid)
    if filled:
        log.warning("%s: no %s file: filled with the constant reflectance %s "
                    "(tiler.sources.B10_FILL_REFLECTANCE)", folder, "/".join(filled),
                    B10_FILL_REFLECTANCE)
    details = {"dem": str(dem), "offset": offset, "quantification": quantification,
               "b10_filled": B10_FILL_REFLECTANCE if filled else None}
    return SceneSpec("bands", str(folder), grid, bands, dem_src, None, details)


def _safe_spec(folder: Path, dem: Path | None) -> SceneSpec:
    product = read_safe(folder)
    files = {b: p for b, p in product.files.items() if b != "B8A"}
    missing = [b for b in SPECTRAL if (b not in files and b != "B10")
               or (b in files and not files[b].exists())]
    if missing:
        first = files.get(missing[0])
        hint = f" ({first})" if first else ""
        raise InputError(f"{folder}: SAFE product is missing band {', '.join(missing)}{hint}")
    grid = _scene_grid(files, folder)
    bands, filled = _band_sources(files, folder, product.offsets, product.quantification)
    _check_overlap(bands, grid)
    dem_src = _dem_source(dem, grid, folder)
    _check_not_empty(bands[1].path, bands[1], grid)
    if filled:
        log.warning("%s: %s product has no %s: filled with the constant reflectance %s "
                    "(tiler.sources.B10_FILL_REFLECTANCE)", folder.name, product.level,
                    "/".join(filled), B10_FILL_REFLECTANCE)
    details = {"dem": str(dem), "level": product.level, "baseline": product.baseline,
               "quantification": product.quantification,
               "offsets": {b: product.offsets[b] for b in SPECTRAL},
               "b10_filled": B10_FILL_REFLECTANCE if filled else None}
    return SceneSpec("safe", str(folder), grid, bands, dem_src, None, details)


def resolve_input(path: str | Path, dem: str | Path | None = None, *, offset: float = 0.0,
                  quantification: float = DEFAULT_QUANTIFICATION,
                  tile: int = TILE) -> SceneSpec:
    """Inspect ``path`` (stacked GeoTIFF, band folder, or ``.SAFE`` folder) and ``dem``.

    ``offset``/``quantification`` apply to integer bands of a band folder only (a SAFE product
    carries its own). Raises InputError (one line, naming the file) on any bad input.
    """
    path = Path(path).resolve()
    dem_path = Path(dem).resolve() if dem is not None else None
    if dem_path is not None and not dem_path.exists():
        raise InputError(f"{dem_path}: DEM file does not exist")
    if not path.exists():
        raise InputError(f"{path}: input does not exist")
    if quantification <= 0:
        raise InputError(f"{path}: --quantification must be positive, got {quantification}")
    if path.is_dir():
        if find_metadata(path) is not None:
            spec = _safe_spec(path, dem_path)
        else:
            spec = _bands_folder_spec(path, dem_path, offset, quantification)
    else:
        spec = _stack_spec(path, dem_path)
    if tile != spec.grid.tile:
        spec = SceneSpec(spec.kind, spec.source,
                         Grid(spec.grid.crs_wkt, spec.grid.transform, spec.grid.height,
                              spec.grid.width, tile, spec.grid.block),
                         spec.bands, spec.dem, spec.slope, spec.details)
    return spec
