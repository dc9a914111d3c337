"""Resolve a tiler input (stacked GeoTIFF, folder of band files, or SAFE product, plus a DEM)
into a ``SceneSpec``: the scene grid and, for each of the 14 bands, where to read it and how to
convert it to the project's convention (``tiler.bands``).

Everything here only reads headers and metadata (plus one small decimated read to catch an
all-nodata scene), so a bad input is refused before any store exists. The spec is a small
picklable dataclass: each Dask task opens the files itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.warp import reproject, transform_bounds
from rasterio.warp import transform as warp_points
from rasterio.windows import Window

from common import provenance
from common.errors import InputError
from common.paths import resolved
from common.provenance import Identity
from tiler.bands import (
    BANDS,
    CONVENTION,
    CONVENTION_TAG,
    CONVENTIONS,
    SPECTRAL,
    TILE,
)
from tiler.dem_units import dem_unit, implausible_heights_note
from tiler.grid import Grid
from tiler.gridding import TARGET_RES, check_metric_store_grid, crs_name, on_10m_grid
from tiler.masks import MaskSource, file_mask, join_notes, scl_mask, unused_values_note
from tiler.radiometry import check_radiometry
from tiler.safe import (
    band_of_name,
    check_not_metadata,
    coarse_note,
    find_metadata,
    looks_like_safe,
    read_safe,
)

log = logging.getLogger(__name__)

B10_FILL_REFLECTANCE = 0.0
"""The one rule for a missing B10 (L2A products have none): a constant clear-sky cirrus
reflectance of 0.0 over the whole scene. Over clear land B10 (1375 nm, water-vapour absorption)
is close to 0; the model cannot learn anything from a constant, and the tiler logs a warning
and records ``b10_filled`` in the store's ``source`` attribute whenever it applies this rule."""

DEFAULT_QUANTIFICATION = 10000.0
"""Sentinel-2 digital numbers per unit of reflectance: the default for integer band files."""
MIN_DATA_SHARE = 0.001
"""A scene whose sampled pixels hold data in under this share (0.1%: stray pixels in a fill,
not a sliver of a granule) is refused as empty."""
ALL_ZERO_IS_NODATA = "0 in every spectral band read from a file is nodata"
"""The one rule for a no-data fill the file does not declare (a zero-filled swath edge, of any
data type): 0 is not an Earth surface in every band at once. ``tiler.blocks`` applies it to
every block; it is part of the tiles' identity."""
NOTES = "notes"
"""Key of ``SceneSpec.details`` for the resolver's one-line notes (joined into the mask note,
then dropped: the store keeps them as ``source.mask.note``)."""
FOOTPRINT_TOLERANCE_M = 60.0
"""Bands of one product cover one footprint: edges may differ by at most one 60 m pixel."""
LATTICE_TOLERANCE_M = 1.0
"""Bands of one product are on one grid: a band's origin (in B2's CRS) is B2's, to a tenth of
a 10 m pixel. The 20 m and 60 m lattices of a Sentinel-2 granule start at its corner too, so a
band whose origin is elsewhere (40 m east: within the footprint's tolerance) is misregistered,
whatever its pixel size."""


@dataclass(frozen=True)
class Conversion:
    """The user's radiometric options: None = the default for the file (integer band files are
    digital numbers: / 10000; float files and stacks are already in their convention)."""

    offset: float | None = None
    quantification: float | None = None
    convention: str | None = None

    @property
    def given(self) -> bool:
        return self.offset is not None or self.quantification is not None


@dataclass(frozen=True)
class BandSource:
    """One band of one raster: value = (raw + offset) / quantification x unit_scale;
    ``nodata`` raw -> NaN. ``unit_scale``: the project's units per unit of the file (a DEM in
    feet: 0.3048 metres per foot)."""

    path: str
    index: int = 1
    offset: float = 0.0
    quantification: float = 1.0
    nodata: float | None = None
    resampling: str = "bilinear"
    unit_scale: float = 1.0


@dataclass(frozen=True)
class SceneSpec:
    """Everything a block task needs. ``bands`` holds the 12 spectral bands (a float is a
    constant fill); ``slope`` is None when it is computed from ``dem`` on the grid; ``mask``
    (``tiler.masks``) the unusable-pixel mask, None when the scene is not masked."""

    kind: str  # "stack", "bands" or "safe"
    source: str
    grid: Grid
    bands: tuple[BandSource | float, ...]
    dem: BandSource
    slope: BandSource | None
    details: dict = field(default_factory=dict)
    convention: str = CONVENTION
    mask: MaskSource | None = None

    @property
    def mask_note(self) -> str | None:
        """A one-line note for the user about the mask (e.g. an L1C product has no SCL)."""
        return (self.details.get("mask") or {}).get("note")

    def identity(self) -> Identity:
        """The identity of the tiles this spec makes: every source file (path, size, mtime:
        bands, DEM, mask), each band's conversion, the DEM and slope sources, the mask and its
        values, the grid, the convention and the store layout."""
        files = sorted({b.path for b in (*self.bands, self.dem, self.slope,
                                         self.mask) if b is not None and hasattr(b, "path")})
        return provenance.make("tiles", {
            "layout": provenance.STORE_LAYOUT,
            "kind": self.kind,
            "source": str(Path(self.source).resolve()),
            "files": [provenance.file_record(f) for f in files],
            "bands": [asdict(b) if isinstance(b, BandSource) else b for b in self.bands],
            "dem": asdict(self.dem),
            "slope": asdict(self.slope) if self.slope is not None else None,
            "mask": asdict(self.mask) if self.mask is not None else None,
            "grid": asdict(self.grid),
            "convention": self.convention,
            "nodata_rule": ALL_ZERO_IS_NODATA,
        })

    def source_record(self) -> dict:
        """What the store records as its ``source`` (``fingerprint``: the identity's digest;
        the store's ``provenance`` attribute holds the identity itself)."""
        record = {"kind": self.kind, "path": self.source, **self.details}
        record["fingerprint"] = self.identity().digest
        return record


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


def _bounds_in(ds: rasterio.DatasetReader, crs_wkt: str) -> tuple:
    dst = CRS.from_wkt(crs_wkt)
    if ds.crs == dst:
        return tuple(ds.bounds)
    return transform_bounds(ds.crs, dst, *ds.bounds, densify_pts=21)


def _check_not_empty(bands: Sequence[BandSource | float],
                     silent: float | None) -> str | None:
    """Refuse a scene with no data, or almost none (under MIN_DATA_SHARE of the sampled
    pixels): nodata in B2, or 0 in every spectral band (ALL_ZERO_IS_NODATA). Returns a note
    when pixels 0 in every spectral band were seen that are not ``silent`` (the file's declared
    nodata; for integer band files, Sentinel-2's DN 0) in B2.

    A few small windows of B2 (of every spectral band for a stack: one file) usually decide at
    once; only when they find too little data, or 0s in a band file's B2, one decimated read
    of every spectral band (overviews for JP2/COG) decides."""
    files = [b for b in bands if isinstance(b, BandSource)]
    b2 = bands[1]
    assert isinstance(b2, BandSource)
    try:
        share, zeros = _sampled_data(b2, files, silent)
    except (RasterioError, CPLE_BaseError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{b2.path}: cannot read (truncated or corrupt file? {first})") from None
    also = " or 0 in every spectral band" if zeros else ""
    if share == 0:
        raise InputError(f"{b2.path}: the scene is empty (every pixel is nodata{also})")
    if share < MIN_DATA_SHARE:
        raise InputError(f"{b2.path}: the scene is nearly empty: {_pct(share)} of the sampled "
                         f"pixels hold data, the others are nodata{also}")
    if not zeros:
        return None
    return (f"{b2.path}: {_pct(zeros)} of the sampled pixels are 0 in every spectral band, a "
            f"no-data fill the file does not declare (e.g. a swath edge): they are nodata")


def _pct(share: float) -> str:
    return f"{share:.0%}" if share >= 0.01 else f"{share:.2%}"


def _sampled_data(b2: BandSource, files: list[BandSource],
                  silent: float | None) -> tuple[float, float]:
    """(share of the sampled pixels holding data, share 0 in every spectral band but not
    ``silent`` in B2)."""
    stack = all(f.path == b2.path for f in files)
    indexes = [f.index for f in files] if stack else [b2.index]
    with _open(b2.path) as ds:
        shape = (min(ds.height, 512), min(ds.width, 512))
        h, w = min(16, ds.height), min(16, ds.width)
        ys = sorted({int(v) for v in np.linspace(0, ds.height - h, 9)})
        xs = sorted({int(v) for v in np.linspace(0, ds.width - w, 9)})
        raw = np.stack([ds.read(indexes, window=Window(x, y, w, h), out_dtype="float64")
                        for y in ys for x in xs], axis=1)
    b2_raw = raw[indexes.index(b2.index)]
    share, zeros = _shares(b2_raw, b2, raw if stack else b2_raw[None], silent)
    if stack and share >= MIN_DATA_SHARE:
        return share, zeros
    if not stack and share >= MIN_DATA_SHARE and not _unsilent_zeros(b2_raw, silent).any():
        return share, zeros
    # Too little data in the windows, or 0s in a band file's B2: all bands, decimated.
    if stack:
        with _open(b2.path) as ds:
            raw = ds.read(indexes, out_shape=(len(indexes), *shape), out_dtype="float64")
    else:
        layers = []
        for f in files:
            with _open(f.path) as ds:
                layers.append(ds.read(f.index, out_shape=shape, out_dtype="float64"))
        raw = np.stack(layers)
    b2_raw = raw[[f.path for f in files].index(b2.path) if not stack
                 else indexes.index(b2.index)]
    return _shares(b2_raw, b2, raw, silent)


def _unsilent_zeros(b2_raw: np.ndarray, silent: float | None) -> np.ndarray:
    return (b2_raw == 0) if silent != 0 else np.zeros(b2_raw.shape, dtype=bool)


def _shares(b2_raw: np.ndarray, b2: BandSource, raw: np.ndarray,
            silent: float | None) -> tuple[float, float]:
    ok = np.isfinite(b2_raw)
    if b2.nodata is not None:
        ok &= b2_raw != b2.nodata
    zero = (raw == 0).all(axis=0)
    n = max(b2_raw.size, 1)
    return (float((ok & ~zero).sum()) / n,
            float((zero & _unsilent_zeros(b2_raw, silent)).sum()) / n)


def _finite_nodata(ds: rasterio.DatasetReader) -> float | None:
    return ds.nodata if ds.nodata is not None and np.isfinite(ds.nodata) else None


def _stack_convention(path: Path, tag: str | None, conv: Conversion) -> str:
    convention = conv.convention or tag or CONVENTION
    if convention not in CONVENTIONS:
        origin = "--convention" if conv.convention else f"its {CONVENTION_TAG} tag"
        raise InputError(f"{path}: unknown convention {convention!r} ({origin}); known: "
                         f"{', '.join(CONVENTIONS)}")
    if conv.convention and tag and tag != conv.convention:
        log.warning("%s: tagged %s=%s; --convention %s overrides it", path, CONVENTION_TAG, tag,
                    conv.convention)
    if convention != CONVENTION and conv.given:
        raise InputError(f"{path}: --offset/--quantification convert digital numbers to "
                         f"{CONVENTION}; a stack in {convention} is stored as it is")
    return convention


def _stack_spec(path: Path, dem: Path | None, conv: Conversion,
                target: Grid | None) -> SceneSpec:
    with _open(path) as ds:
        if ds.count != len(BANDS):
            raise InputError(
                f"{path}: {ds.count} bands, expected {len(BANDS)} ({', '.join(BANDS)})")
        native = _grid_of(ds, path)
        nodata = _finite_nodata(ds)
        declared = ds.nodata
        integer = np.issubdtype(np.dtype(ds.dtypes[0]), np.integer)
        tag = ds.tags().get(CONVENTION_TAG)
    convention = _stack_convention(path, tag, conv)
    if dem is not None:
        log.warning("%s is a stacked scene with its own DEM band: --dem %s is ignored", path, dem)
    offset = conv.offset if conv.offset is not None else 0.0
    q = conv.quantification if conv.quantification is not None else 1.0
    # Digital numbers, as in band files: 0 = nodata of the spectral bands unless declared.
    spectral_nodata = nodata if nodata is not None or not integer else 0.0
    srcs = [BandSource(str(path), i + 1, offset, q, spectral_nodata) if i < len(SPECTRAL)
            else BandSource(str(path), i + 1, nodata=nodata) for i in range(len(BANDS))]
    zero_note = _check_not_empty(srcs[:12], declared)
    grid, grid_record, region = _grid_for(native, target, path)
    medians = check_radiometry(convention, dict(zip(SPECTRAL, srcs[:12], strict=True)),
                               srcs[12], "stack")
    details = {"dem": None, "grid": grid_record, "conversion": _conversion_record(srcs[:12]),
               "sampled_medians": medians, "footprint": region, NOTES: [zero_note]}
    return SceneSpec("stack", str(path), grid, tuple(srcs[:12]), srcs[13], srcs[12], details,
                     convention)


def _conversion_record(bands: tuple | list) -> dict:
    return {b: {"offset": s.offset, "quantification": s.quantification}
            for b, s in zip(SPECTRAL, bands, strict=True) if isinstance(s, BandSource)}


def _band_sources(files: dict[str, Path], where: Path, offsets: dict[str, float] | None,
                  quantification: float | None) -> tuple[tuple[BandSource | float, ...],
                                                         list[str]]:
    """The 12 spectral bands' sources. ``offsets`` / ``quantification`` None: the default for
    the file's type (integer: digital numbers, offset 0, / 10000; float: as it is)."""
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
            # Digital numbers: 0 = nodata for Sentinel-2 bands, unless the file declares its own.
            nodata = _finite_nodata(ds)
            if nodata is None and integer:
                nodata = 0.0
        q = quantification if quantification is not None else (
            DEFAULT_QUANTIFICATION if integer else 1.0)
        offset = offsets.get(band, 0.0) if offsets is not None else 0.0
        out.append(BandSource(str(f), 1, offset, q, nodata))
    filled = [b for b, s in zip(SPECTRAL, out, strict=True) if not isinstance(s, BandSource)]
    return tuple(out), filled


def _check_footprints(bands: tuple, files_grid: Grid, grid: Grid) -> None:
    """Every band file covers B2's footprint, to one 60 m pixel (compared in the grid's
    metres): a cropped or shifted band would silently shrink the valid area. A band in B2's
    CRS is on the product's grid: its origin is B2's, to LATTICE_TOLERANCE_M (a 10/20/60 m
    band shifted by less than the footprint's tolerance is misregistered)."""
    ref = _fmt_bounds_in(files_grid, grid)
    native = CRS.from_wkt(files_grid.crs_wkt)
    for band, src in zip(SPECTRAL, bands, strict=True):
        if not isinstance(src, BandSource) or band == "B2":
            continue
        with _open(src.path) as ds:
            b = _bounds_in(ds, grid.crs_wkt)
            origin = (ds.transform.c, ds.transform.f) if ds.crs == native else None
        off = max(abs(x - y) for x, y in zip(b, ref, strict=True))
        if off > FOOTPRINT_TOLERANCE_M:
            raise InputError(f"{src.path}: band {band} covers {_fmt(b)}, not B2's footprint "
                             f"{_fmt(ref)} (edges {off:.0f} m apart; bands of one product must "
                             f"cover the same footprint to {FOOTPRINT_TOLERANCE_M:g} m)")
        if origin is not None:
            _check_origin(src.path, band, origin, files_grid, grid)


def _check_origin(path: str, band: str, origin: tuple[float, float], files_grid: Grid,
                  grid: Grid) -> None:
    """Refuse a band whose origin (in B2's CRS) is not B2's: the offset in the grid's metres."""
    ref = (files_grid.transform[2], files_grid.transform[5])
    src, dst = CRS.from_wkt(files_grid.crs_wkt), CRS.from_wkt(grid.crs_wkt)
    if src == dst:
        dx, dy = origin[0] - ref[0], origin[1] - ref[1]
    else:
        xs, ys = warp_points(src, dst, [ref[0], origin[0]], [ref[1], origin[1]])
        dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    if max(abs(dx), abs(dy)) > LATTICE_TOLERANCE_M:
        raise InputError(f"{path}: band {band} is misregistered: its origin is {dx:+.1f} m "
                         f"east and {dy:+.1f} m north of B2's (bands of one product are on one "
                         f"grid: their origins agree to {LATTICE_TOLERANCE_M:g} m)")


def _fmt_bounds_in(native: Grid, grid: Grid) -> tuple:
    if CRS.from_wkt(native.crs_wkt) == CRS.from_wkt(grid.crs_wkt):
        return native.bounds()
    return transform_bounds(CRS.from_wkt(native.crs_wkt), CRS.from_wkt(grid.crs_wkt),
                            *native.bounds(), densify_pts=21)


def _dem_source(dem: Path | None, grid: Grid, where: Path,
                region: tuple | None = None) -> tuple[BandSource, str | None]:
    """The DEM, which must cover ``region`` (the scene's footprint on ``grid``; None: the
    whole grid) and hold data there, converted to metres when its declared unit is feet; and
    a note when it was converted, or when its heights over the scene are no heights on Earth
    in metres (a DEM in feet that does not say so)."""
    if dem is None:
        raise InputError(f"{where}: per-band and SAFE input need --dem (a DEM raster)")
    with _open(dem) as ds:
        if ds.crs is None:
            raise InputError(f"{dem}: DEM has no CRS")
        nodata = _finite_nodata(ds)
        b = _bounds_in(ds, grid.crs_wkt)
        unit, where, scale = dem_unit(ds, dem)
    s = tuple(region) if region is not None else grid.bounds()
    tol = 0.5 * max(grid.res)
    if not (b[0] <= s[0] + tol and b[1] <= s[1] + tol and b[2] >= s[2] - tol
            and b[3] >= s[3] - tol):
        raise InputError(f"{dem}: the DEM does not cover the scene (DEM bounds {_fmt(b)} vs "
                         f"scene {_fmt(s)} in the scene CRS)")
    src = BandSource(str(dem), 1, 0.0, 1.0, nodata, unit_scale=scale)
    heights = _check_dem_has_data(src, grid)
    converted = (f"{dem}: the DEM is in {unit} (its {where}): converted to metres "
                 f"(x {scale:.10g})" if scale != 1.0 else None)
    return src, join_notes(converted, implausible_heights_note(dem, heights, unit, where))


def _check_dem_has_data(src: BandSource, grid: Grid, size: int = 256) -> np.ndarray:
    """Refuse a DEM that is nodata over the whole scene (it would make every pixel invalid and
    the scene look empty). A coarse warp of the DEM onto the scene's footprint decides; its
    heights (converted as the blocks convert them, NaN = nodata) are returned."""
    h, w = min(grid.height, size), min(grid.width, size)
    a, _, c, _, e, f = grid.transform
    coarse = Affine(a * grid.width / w, 0.0, c, 0.0, e * grid.height / h, f)
    out = np.full((h, w), np.nan, dtype="float32")
    with _open(src.path) as ds:
        reproject(rasterio.band(ds, 1), out, src_nodata=src.nodata, dst_nodata=np.nan,
                  dst_transform=coarse, dst_crs=CRS.from_wkt(grid.crs_wkt),
                  resampling=Resampling.nearest)
    if not np.isfinite(out).any():
        raise InputError(f"{src.path}: the DEM has no data over the scene (every pixel there "
                         f"is nodata)")
    return (out + np.float32(src.offset)) / np.float32(src.quantification) * np.float32(
        src.unit_scale)


def _fmt(b: tuple) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in b) + ")"


def _native_grid(files: dict[str, Path], where: Path) -> Grid:
    b2 = files.get("B2")
    if b2 is None or not b2.exists():
        raise InputError(f"{where}: missing band file for B2 (it defines the scene grid)")
    with _open(b2) as ds:
        return _grid_of(ds, b2)


def _refuse_other_convention(where: Path, conv: Conversion, kind: str) -> None:
    if conv.convention not in (None, CONVENTION):
        raise InputError(f"{where}: --convention {conv.convention} applies to stacked GeoTIFFs; "
                         f"{kind} are converted to {CONVENTION}")


def _bands_folder_spec(folder: Path, dem: Path | None, conv: Conversion,
                       target: Grid | None) -> SceneSpec:
    _refuse_other_convention(folder, conv, "band files")
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
    native = _native_grid(files, folder)
    grid, grid_record, region = _grid_for(native, target, folder)
    offsets = {b: conv.offset for b in SPECTRAL} if conv.offset is not None else None
    bands, filled = _band_sources(files, folder, offsets, conv.quantification)
    _check_footprints(bands, native, grid)
    dem_src, dem_note = _dem_source(dem, grid, folder, region)
    zero_note = _check_not_empty(bands, bands[1].nodata)
    medians = check_radiometry(CONVENTION, _spectral_sources(bands), None, "bands")
    if filled:
        log.warning("%s: no %s file: filled with the constant reflectance %s "
                    "(tiler.sources.B10_FILL_REFLECTANCE)", folder, "/".join(filled),
                    B10_FILL_REFLECTANCE)
    details = {"dem": str(dem), "grid": grid_record, "conversion": _conversion_record(bands),
               "sampled_medians": medians,
               "b10_filled": B10_FILL_REFLECTANCE if filled else None, "footprint": region,
               NOTES: [zero_note, dem_note]}
    return SceneSpec("bands", str(folder), grid, bands, dem_src, None, details)


def _spectral_sources(bands: tuple) -> dict[str, BandSource]:
    return {b: s for b, s in zip(SPECTRAL, bands, strict=True) if isinstance(s, BandSource)}


def _safe_spec(folder: Path, dem: Path | None, conv: Conversion,
               target: Grid | None) -> SceneSpec:
    _refuse_other_convention(folder, conv, "SAFE products")
    if conv.given:
        raise InputError(f"{folder}: a SAFE product's metadata gives its conversion "
                         f"(quantification and offsets); --offset/--quantification do not apply")
    product = read_safe(folder)
    files = {b: p for b, p in product.files.items() if b != "B8A"}
    missing = [b for b in SPECTRAL if (b not in files and b != "B10")
               or (b in files and not files[b].exists())]
    if missing:
        first = files.get(missing[0])
        hint = f" ({first})" if first else ""
        raise InputError(f"{folder}: SAFE product is missing band {', '.join(missing)}{hint}")
    native = _native_grid(files, folder)
    grid, grid_record, region = _grid_for(native, target, folder)
    bands, filled = _band_sources(files, folder, product.offsets, product.quantification)
    _check_footprints(bands, native, grid)
    dem_src, dem_note = _dem_source(dem, grid, folder, region)
    zero_note = _check_not_empty(bands, bands[1].nodata)
    medians = check_radiometry(CONVENTION, _spectral_sources(bands), None, "safe")
    if filled:
        log.warning("%s: %s product has no %s: filled with the constant reflectance %s "
                    "(tiler.sources.B10_FILL_REFLECTANCE)", folder.name, product.level,
                    "/".join(filled), B10_FILL_REFLECTANCE)
    details = {"dem": str(dem), "grid": grid_record, "level": product.level,
               "baseline": product.baseline, "quantification": product.quantification,
               "offsets": {b: product.offsets[b] for b in SPECTRAL},
               "conversion": _conversion_record(bands), "sampled_medians": medians,
               "b10_filled": B10_FILL_REFLECTANCE if filled else None, "footprint": region,
               "scl": str(product.scl) if product.scl is not None else None,
               "resolution_note": coarse_note(product), NOTES: [zero_note, dem_note]}
    return SceneSpec("safe", str(folder), grid, bands, dem_src, None, details)


def _grid_for(native: Grid, target: Grid | None, where: Path) -> tuple[Grid, dict, list]:
    """The grid the scene is stored on, its record, and the scene's footprint on it (in its
    CRS). ``target`` None: the scene's own 10 m grid (``tiler.gridding``); else that grid,
    whose pixels outside the scene become nodata; refused when the two do not overlap."""
    if target is None:
        grid, record = on_10m_grid(native)
        return grid, record, list(grid.bounds())
    if check_metric_store_grid(target, str(where)) is not None:
        raise InputError(f"{where}: the given grid is not 10 m in ground metres "
                         f"({crs_name(CRS.from_wkt(target.crs_wkt))}, {target.res[0]:g} "
                         f"x {target.res[1]:g})")
    fp, g = _fmt_bounds_in(native, target), target.bounds()
    region = [max(fp[0], g[0]), max(fp[1], g[1]), min(fp[2], g[2]), min(fp[3], g[3])]
    if region[0] >= region[2] or region[1] >= region[3]:
        raise InputError(f"{where}: the scene {_fmt(fp)} does not overlap the given grid "
                         f"{_fmt(g)} (bounds in the grid's CRS)")
    same = (CRS.from_wkt(native.crs_wkt) == CRS.from_wkt(target.crs_wkt)
            and np.allclose(native.transform, target.transform, rtol=0, atol=1e-9))
    share = ((region[2] - region[0]) * (region[3] - region[1])
             / ((g[2] - g[0]) * (g[3] - g[1])))
    record = {"crs": crs_name(CRS.from_wkt(target.crs_wkt)), "res_m": TARGET_RES,
              "resampled_from": None if same else {
                  "crs": crs_name(CRS.from_wkt(native.crs_wkt)), "res": list(native.res),
                  "reason": "onto the given grid"},
              "given": True, "covered_share": round(share, 6)}
    return target, record, region


def _with_mask(spec: SceneSpec, mask: str | Path | None,
               values: tuple[float, ...] | None) -> SceneSpec:
    """The spec with its unusable-pixel mask: ``mask`` (a file), else an L2A product's SCL,
    else none (an L1C product, or an L2A without its SCL file: said in the note)."""
    note = None
    src: MaskSource | None = None
    if mask is not None:
        src = file_mask(mask, values, spec.grid, tuple(spec.details["footprint"]))
    elif spec.details.get("scl"):
        src = scl_mask(Path(spec.details["scl"]), values)
    elif spec.kind == "safe":
        if spec.details.get("level") == "L1C":
            note = (f"{spec.source}: an L1C product has no scene classification (SCL): clouds, "
                    f"cloud shadows and snow are not masked (pass --mask FILE to mask them)")
        else:
            note = (f"{spec.source}: no SCL file (IMG_DATA/R20m/*_SCL_20m.jp2) in this L2A "
                    f"product: clouds, cloud shadows and snow are not masked")
    note = join_notes(note, unused_values_note(src) if src is not None else None,
                      spec.details.get("resolution_note"), *spec.details.get(NOTES, ()))
    if src is None and values is not None:
        raise InputError(f"{spec.source}: --mask-values needs a mask: --mask FILE, or an L2A "
                         f"product with its SCL; this input has none")
    record = src.record() if src is not None else {"kind": None, "path": None,
                                                   "excluded_values": []}
    details = {k: v for k, v in spec.details.items() if k not in ("scl", NOTES)}
    details["mask"] = {**record, "note": note}
    return replace(spec, mask=src, details=details)


def _check_conversion(path: Path, conv: Conversion) -> None:
    q, off = conv.quantification, conv.offset
    if q is not None and not (np.isfinite(q) and q > 0):
        raise InputError(f"{path}: --quantification must be a positive number, got {q}")
    if off is not None and not np.isfinite(off):
        raise InputError(f"{path}: --offset must be a finite number, got {off}")


def resolve_input(path: str | Path, dem: str | Path | None = None, *,
                  offset: float | None = None, quantification: float | None = None,
                  convention: str | None = None, tile: int = TILE,
                  mask: str | Path | None = None, mask_values: Sequence[float] | None = None,
                  grid: Grid | None = None) -> SceneSpec:
    """Inspect ``path`` (stacked GeoTIFF, band folder, or ``.SAFE`` folder) and ``dem``.

    ``offset``/``quantification`` (None: the file type's default) convert the spectral bands of
    a band folder or stack, of any dtype: (value + offset) / quantification; a SAFE product
    carries its own. ``convention`` (None: the stack's CONVENTION_TAG, else CONVENTION) says
    what a stack holds. The scene goes on the 10 m grid of ``tiler.gridding``, or onto
    ``grid`` when given (a 10 m metre grid, e.g. the post-event scene's for a pre-event one:
    its pixels outside the scene become nodata; refused when they do not overlap).

    ``mask`` (a one-band raster in any CRS covering the scene) marks unusable pixels: those
    whose value is in ``mask_values`` (None: ``tiler.masks.SCL_EXCLUDED``) become nodata. An
    L2A product's own SCL is that mask unless ``mask`` is given; an L1C product is not masked
    (``SceneSpec.mask_note`` says so). Raises InputError (one line, naming the file) on any bad
    input.
    """
    path = resolved(path, "the input", InputError)
    dem_path = resolved(dem, "--dem", InputError) if dem is not None else None
    conv = Conversion(offset, quantification, convention)
    if dem_path is not None and not dem_path.exists():
        raise InputError(f"{dem_path}: DEM file does not exist")
    if not path.exists():
        raise InputError(f"{path}: input does not exist")
    check_not_metadata(path)
    _check_conversion(path, conv)
    values = tuple(sorted({float(v) for v in mask_values})) if mask_values else None
    if mask_values is not None and not values:
        raise InputError(f"{path}: --mask-values is empty")
    if path.is_dir():
        if find_metadata(path) is not None:
            spec = _safe_spec(path, dem_path, conv, grid)
        elif looks_like_safe(path):
            raise InputError(f"{path}: looks like a SAFE product but has no MTD_MSIL2A.xml or "
                             f"MTD_MSIL1C.xml (the metadata gives the conversion to reflectance)")
        else:
            spec = _bands_folder_spec(path, dem_path, conv, grid)
    else:
        spec = _stack_spec(path, dem_path, conv, grid)
    spec = _with_mask(spec, mask, values)
    assert abs(spec.grid.res[0] - TARGET_RES) < 1e-6
    if tile != spec.grid.tile:
        spec = replace(spec, grid=replace(spec.grid, tile=tile))
    return spec
