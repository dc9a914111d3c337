"""Which 10 m grid a scene goes on.

The model was trained on 10 m pixels and every area the product reports is in m2, so a scene is
kept on its own grid only when that grid already is 10 m in a metre-based projection that keeps
areas and shapes (not Web Mercator). Anything else (EPSG:4326 exports from Earth Engine and
portals, 20 m stacks, a CRS in feet, Mercator) is put on a 10 m grid: in the UTM zone of the
scene's centre when the CRS is geographic, in feet or Mercator, else in the scene's own CRS.
The readers then warp every band onto that grid (``tiler.blocks``).
"""

from __future__ import annotations

import math

from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from tiler.grid import Grid

TARGET_RES = 10.0
"""Metres per pixel of every store: the resolution of Sentinel-2's finest bands and of L4S."""
RES_TOLERANCE = 1e-6
DISTORTING = ("merc",)
"""PROJ projections whose metres are not ground metres away from the equator."""


def metric_reason(crs: CRS) -> str | None:
    """None when ``crs`` measures ground metres; else why it does not."""
    if crs.is_geographic or not crs.is_projected:
        return "geographic CRS (degrees)"
    try:
        unit, factor = crs.linear_units_factor
    except CRSError:
        return "CRS without a linear unit"
    if abs(factor - 1.0) > 1e-12:
        return f"CRS in {unit}"
    if crs.to_dict().get("proj") in DISTORTING:
        return "Mercator CRS (metres are not ground metres)"
    return None


def measures_ground_metres(crs: CRS) -> bool:
    """The project's one rule for "metres on the ground": a projected CRS in metres that is not
    Mercator. Lengths and areas measured on its plane are metres and m2 (to the projection's
    small scale error); in any other CRS they must be measured on the ellipsoid."""
    return metric_reason(crs) is None


def utm_of(lon: float, lat: float) -> CRS:
    """The WGS 84 UTM zone holding (lon, lat)."""
    zone = min(max(int(math.floor((lon + 180.0) / 6.0)) + 1, 1), 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def on_10m_grid(native: Grid) -> tuple[Grid, dict]:
    """The grid a scene whose own grid is ``native`` is stored on, and a record of the choice
    (``crs``, ``res_m``, ``resampled_from`` with the reason, or None when kept)."""
    crs = CRS.from_wkt(native.crs_wkt)
    reason = metric_reason(crs)
    xres, yres = native.res
    if reason is None and max(abs(xres - TARGET_RES), abs(yres - TARGET_RES)) <= RES_TOLERANCE:
        return native, {"crs": crs_name(crs), "res_m": TARGET_RES, "resampled_from": None}
    if reason is None:
        grid = _same_crs_grid(native)
        why = f"{xres:g} x {yres:g} m pixels"
    else:
        grid = _utm_grid(native, crs)
        why = reason
    record = {"crs": crs_name(CRS.from_wkt(grid.crs_wkt)), "res_m": TARGET_RES,
              "resampled_from": {"crs": crs_name(crs), "res": [xres, yres], "reason": why}}
    return grid, record


def _same_crs_grid(native: Grid) -> Grid:
    left, bottom, right, top = native.bounds()
    width = max(1, math.ceil((right - left) / TARGET_RES - 1e-9))
    height = max(1, math.ceil((top - bottom) / TARGET_RES - 1e-9))
    return Grid(native.crs_wkt, (TARGET_RES, 0.0, left, 0.0, -TARGET_RES, top), height, width,
                native.tile, native.block)


def _utm_grid(native: Grid, crs: CRS) -> Grid:
    bounds = native.bounds()
    lon0, lat0, lon1, lat1 = transform_bounds(crs, CRS.from_epsg(4326), *bounds, densify_pts=21)
    utm = utm_of((lon0 + lon1) / 2.0, (lat0 + lat1) / 2.0)
    left, bottom, right, top = transform_bounds(crs, utm, *bounds, densify_pts=21)
    left = math.floor(left / TARGET_RES) * TARGET_RES
    top = math.ceil(top / TARGET_RES) * TARGET_RES
    width = max(1, math.ceil((right - left) / TARGET_RES))
    height = max(1, math.ceil((top - bottom) / TARGET_RES))
    return Grid(utm.to_wkt(), (TARGET_RES, 0.0, left, 0.0, -TARGET_RES, top), height, width,
                native.tile, native.block)


def check_metric_store_grid(grid: Grid, where: str) -> str | None:
    """A one-line problem when a store's grid is not 10 m ground metres, else None."""
    reason = metric_reason(CRS.from_wkt(grid.crs_wkt))
    if reason is None and max(abs(r - TARGET_RES) for r in grid.res) <= RES_TOLERANCE:
        return None
    return (f"{where}: the store's grid is not 10 m in ground metres "
            f"({reason or f'{grid.res[0]:g} m pixels'}); tile the scene again")
