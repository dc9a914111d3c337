"""An event, not a scene (issue 13): two overlapping post-event L2A granules of one world, the
pre-event product of each, a DEM covering both, the truths and ``event.json``.

Granule B is granule A's window shifted east by ``width - overlap`` columns (a multiple of 6,
so their 20 m and 60 m grids coincide), on the same rows: in the overlap both hold the same
pixels. Each acquisition is ``simulator.acquisition.render``: the post-event one with the
event's landslides under ``POST_SKY``, the pre-event one of the same ground without them under
``PRE_SKY`` (other clouds). Dormant scars are bare in both. Granule B has a slanted swath edge
(no data) along its east side in both acquisitions (one relative orbit).

Layout of OUT (paths in event.json are relative to OUT; ``read_event`` resolves them):

- ``S2B_MSIL2A_<date>_N0510_R067_<tile>_<date>.SAFE``: four L2A products (``write_safe``) with
  ``IMG_DATA/R20m/<tile>_<date>_SCL_20m.jp2`` (and ``R60m/..._SCL_60m.jp2``), uint8 SCL;
- ``stacks/{post,pre}_{A,B}.tif``: the same images as 14-band float32 stacks (NaN nodata);
- ``dem.tif``: a DEM in EPSG:4326 covering both granules (int16, nodata -32768);
- ``truth_A.tif``, ``truth_B.tif``: uint8 on each granule's 10 m grid: 1 landslide of the
  event, 0 not, 255 no data or a pixel the post-event SCL marks unusable (``SCL_UNUSABLE``,
  upsampled by nearest neighbour: exactly the pixels the tiler masks);
- ``event.json``: see ``write_event``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject, transform_bounds

from common import owned
from common.errors import SimulatorError
from simulator import JOB
from simulator.acquisition import render
from simulator.products import DEM_NODATA, DEM_RES_DEG, safe_name, write_safe
from simulator.relief import PIXEL, dem_window
from simulator.scene import CRS, MAX_SIDE, TRUTH_NODATA, X0, Y0, scene_origin
from simulator.sky import POST_SKY, PRE_SKY, SCL_UNUSABLE, to_10m
from tiler.bands import BANDS, CONVENTION, CONVENTION_TAG

DEFAULT_SIZE = 1024
DEFAULT_OVERLAP = 256
ALIGN = 6
"""Granule origins lie on multiples of 6 pixels (60 m) of the world."""
GRANULES = (("A", "T45RUL"), ("B", "T45RVL"))
POST_DATE = "20241008T045701"
PRE_DATE = "20240918T045659"
EVENT_DATE = "2024-09-27"
BASELINE = "05.10"
DEM_MARGIN_DEG = 0.005


@dataclass(frozen=True)
class EventInfo:
    manifest: Path
    summary: str


def _iso(date: str) -> str:
    return f"{date[:4]}-{date[4:6]}-{date[6:8]}T{date[9:11]}:{date[11:13]}:{date[13:15]}Z"


def _check(out: Path, seed: int, height: int, width: int, overlap: int) -> None:
    if not 0 <= seed < 2**32:
        raise SimulatorError(f"seed must be in [0, 2**32), got {seed}")
    for name, v in (("height", height), ("width", width)):
        if not 2 <= v <= MAX_SIDE:
            raise SimulatorError(f"{name} must be between 2 and {MAX_SIDE}, got {v}")
    if not 1 <= overlap < width:
        raise SimulatorError(f"--overlap must be between 1 and width - 1 ({width - 1}), "
                             f"got {overlap}")
    if (width - overlap) % ALIGN:
        raise SimulatorError(f"width - overlap must be a multiple of {ALIGN} (the granules' "
                             f"60 m grids coincide), got {width} - {overlap}")
    if out.exists() and not out.is_dir():
        raise SimulatorError(f"{out} exists and is not a directory")


def _swath_edge(seed: int, height: int, width: int) -> np.ndarray:
    """Granule B's nodata: a slanted strip along its east side, 3-7% of its width."""
    rng = np.random.default_rng([seed, 13])
    top, bottom = rng.uniform(0.03, 0.05), rng.uniform(0.05, 0.07)
    rows = np.arange(height, dtype=np.float64)[:, None] + 0.5
    edge = (top + (bottom - top) * rows / height) * width
    return np.arange(width, dtype=np.float64)[None, :] + 0.5 > width - edge


def _write_stack(path: Path, img: np.ndarray, transform: Affine) -> None:
    _, h, w = img.shape
    with owned.output_file(path, JOB) as tmp, \
            rasterio.open(tmp, "w", driver="GTiff", height=h, width=w, count=len(BANDS),
                          dtype="float32", crs=CRS, transform=transform, nodata=float("nan"),
                          tiled=True, blockxsize=256, blockysize=256, compress="zstd",
                          zstd_level=1, predictor=3, interleave="band") as dst:
        for i, name in enumerate(BANDS, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(**{CONVENTION_TAG: CONVENTION}, simulator="simulator.event")
        dst.write(img)


def _write_scl(safe: Path, scl: np.ndarray, transform: Affine) -> Path:
    """The SCL JP2s at R20m (and R60m, every third cell) where the MTD lists them."""
    r20 = next((safe / "GRANULE").glob("*/IMG_DATA/R20m"))
    stem = next(r20.glob("*_B05_20m.jp2")).name.replace("_B05_20m.jp2", "")
    out = {}
    for res, arr, t in ((20, scl, transform @ Affine.scale(2)),
                        (60, scl[1::3, 1::3], transform @ Affine.scale(6))):
        path = r20.parent / f"R{res}m" / f"{stem}_SCL_{res}m.jp2"
        with rasterio.open(path, "w", driver="JP2OpenJPEG", height=arr.shape[0],
                           width=arr.shape[1], count=1, dtype="uint8", crs=CRS, transform=t,
                           QUALITY=100, REVERSIBLE="YES") as dst:
            dst.write(arr, 1)
        out[res] = path
    return out[20]


def _write_truth(path: Path, truth: np.ndarray, transform: Affine) -> None:
    with owned.output_file(path, JOB) as tmp, \
            rasterio.open(tmp, "w", driver="GTiff", height=truth.shape[0],
                          width=truth.shape[1], count=1, dtype="uint8", crs=CRS,
                          transform=transform, nodata=TRUTH_NODATA, compress="deflate") as dst:
        dst.set_band_description(1, "landslide")
        dst.write(truth, 1)


def _write_dem(path: Path, seed: int, row0: int, col0: int, height: int, width: int) -> None:
    """The world's DEM over the window plus a margin, in EPSG:4326 (like ``write_dem``)."""
    pad = math.ceil(2 * DEM_MARGIN_DEG * 111_320 / PIXEL) + 2
    dem = dem_window(seed, row0 - pad, col0 - pad, height + 2 * pad, width + 2 * pad)
    src_t = Affine(PIXEL, 0, X0 - pad * PIXEL, 0, -PIXEL, Y0 + pad * PIXEL)
    bounds = (X0, Y0 - height * PIXEL, X0 + width * PIXEL, Y0)
    left, bottom, right, top = transform_bounds(CRS, "EPSG:4326", *bounds, densify_pts=21)
    left, bottom = left - DEM_MARGIN_DEG, bottom - DEM_MARGIN_DEG
    right, top = right + DEM_MARGIN_DEG, top + DEM_MARGIN_DEG
    w, h = math.ceil((right - left) / DEM_RES_DEG), math.ceil((top - bottom) / DEM_RES_DEG)
    t = Affine(DEM_RES_DEG, 0, left, 0, -DEM_RES_DEG, top)
    out = np.full((h, w), np.nan, dtype="float32")
    reproject(dem, out, src_transform=src_t, src_crs=CRS, src_nodata=np.nan, dst_transform=t,
              dst_crs="EPSG:4326", dst_nodata=np.nan, resampling=Resampling.bilinear)
    dn = np.where(np.isfinite(out), np.clip(np.round(out), -32767, 32767), DEM_NODATA)
    with owned.output_file(path, JOB) as tmp, \
            rasterio.open(tmp, "w", driver="GTiff", height=h, width=w, count=1, dtype="int16",
                          crs="EPSG:4326", transform=t, nodata=DEM_NODATA,
                          compress="deflate") as dst:
        dst.write(dn.astype("int16"), 1)


def _granule(out: Path, seed: int, name: str, tile: str, row0: int, col0: int, col_off: int,
             height: int, width: int) -> dict:
    transform = Affine(PIXEL, 0.0, X0 + col_off * PIXEL, 0.0, -PIXEL, Y0)
    nodata = _swath_edge(seed, height, width) if name == "B" else None
    record: dict = {"tile_id": tile, "col_offset": col_off, "world_row0": row0,
                    "world_col0": col0 + col_off, "transform": list(transform)[:6]}
    for when, sky, date in (("post", POST_SKY, POST_DATE), ("pre", PRE_SKY, PRE_DATE)):
        acq = render(seed, row0, col0 + col_off, height, width, after=when == "post", sky=sky,
                     nodata=nodata)
        stack = out / "stacks" / f"{when}_{name}.tif"
        _write_stack(stack, acq.image, transform)
        safe = write_safe(stack, out, BASELINE, tile_id=tile, date=date,
                          finish=lambda root, a=acq: _write_scl(root, a.scl, transform))
        scl = next(safe.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
        record[when] = {"product": safe.name, "stack": str(stack.relative_to(out)),
                        "scl": str(scl.relative_to(out)), "sensing_date": _iso(date),
                        "landslide_pixels": int(acq.landslides.sum()),
                        "dormant_scar_pixels": int(acq.dormant.sum())}
        if when == "post":
            unusable = np.isin(to_10m(acq.scl, height, width), SCL_UNUSABLE)
            truth = np.where(unusable, TRUTH_NODATA, acq.landslides).astype("uint8")
            _write_truth(out / f"truth_{name}.tif", truth, transform)
            record["truth"] = f"truth_{name}.tif"
            record["truth_landslide_pixels"] = int((truth == 1).sum())
    return record


def _outputs() -> list[tuple[str, str]]:
    """(name, kind) of what ``write_event`` writes in OUT (``stacks/`` is a claimed folder)."""
    return [*((safe_name(BASELINE, t, d), "dir") for d in (POST_DATE, PRE_DATE)
              for _, t in GRANULES),
            *((f"truth_{g}.tif", "file") for g, _ in GRANULES), ("dem.tif", "file"),
            ("event.json", "file")]


def write_event(out_dir: str | os.PathLike, *, seed: int = 0, height: int = DEFAULT_SIZE,
                width: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP) -> EventInfo:
    """Write the event into ``out_dir`` (see the module's docstring), ``event.json`` last:

    ``{"seed", "height", "width", "overlap", "crs", "event_date", "dem",
    "sensing_dates": {"pre", "post"}, "granules": {"A": G, "B": G}}`` with each G =
    ``{"tile_id", "col_offset", "world_row0", "world_col0", "transform" (a..f),
    "truth", "truth_landslide_pixels",
    "post": P, "pre": P}`` and P = ``{"product" (the .SAFE folder), "stack", "scl",
    "sensing_date", "landslide_pixels", "dormant_scar_pixels"}``; paths relative to OUT.
    """
    out = Path(out_dir)
    _check(out, seed, height, width, overlap)
    shift = width - overlap
    r, c = scene_origin(seed, height, width + shift)
    row0, col0 = r - r % ALIGN, c - c % ALIGN
    owned.claim_folder(out, JOB)
    for name, kind in _outputs():  # all refused before anything is written
        owned.check_replaceable(out / name, JOB, kind)
    owned.remove(out / "event.json", JOB)
    owned.claim_folder(out / "stacks", JOB, "OUT/stacks")
    granules = {name: _granule(out, seed, name, tile, row0, col0, i * shift, height, width)
                for i, (name, tile) in enumerate(GRANULES)}
    _write_dem(out / "dem.tif", seed, row0, col0, height, width + shift)
    manifest = {"seed": seed, "height": height, "width": width, "overlap": overlap,
                "crs": CRS, "event_date": EVENT_DATE, "dem": "dem.tif",
                "sensing_dates": {"pre": _iso(PRE_DATE), "post": _iso(POST_DATE)},
                "granules": granules}
    owned.write_text(out / "event.json", json.dumps(manifest, indent=2) + "\n", JOB)
    n = sum(g["truth_landslide_pixels"] for g in granules.values())
    return EventInfo(out / "event.json", f"granules A and B of {height} x {width} overlapping "
                                         f"by {overlap} columns, before and after; {n} "
                                         f"landslide pixels in the truths")


def read_event(path: str | os.PathLike) -> dict:
    """``event.json`` (or its folder) with every path made absolute."""
    path = Path(path)
    if path.is_dir():
        path = path / "event.json"
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"{path}: not a readable event.json ({exc})") from None
    root = path.parent.resolve()
    event["dem"] = str(root / event["dem"])
    for g in event["granules"].values():
        g["truth"] = str(root / g["truth"])
        for when in ("post", "pre"):
            for key in ("product", "stack", "scl"):
                g[when][key] = str(root / g[when][key])
    return event
