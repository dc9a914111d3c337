"""Landslide polygons: polygonise the thresholded map, post-process, burn back the mask.

The final mask raster is the rasterisation of the kept polygons, so raster and vector always
agree: a polygon's area equals its pixel count times the pixel area.

Two routes give the same polygons: ``polygonize`` over a whole thresholded raster, or
``block_polygons`` on each block as it is predicted (in the workers, in pixel coordinates of the
scene, so shared borders are exact) and ``merge_block_polygons`` at the end: a landslide cut by
block borders is unioned back into one polygon before the minimum area is applied.
"""

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyogrio.raw
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry import Polygon, shape

from products.change import LAYERS, vegetation_evidence
from products.groups import connected_groups
from products.rasters import MASK_NODATA, grid_profile
from products.zonal import ZoneStats
from tiler.grid import Grid
from tiler.predictions import CHANGE, PROBABILITY, open_predictions
from tiler.store import IMAGE, VALID, open_group


@dataclass(frozen=True)
class Landslides:
    polygons: list[Polygon]
    areas_m2: np.ndarray
    mean_probability: np.ndarray
    attributes: dict[str, np.ndarray | list] = field(default_factory=dict)
    """More columns of the polygon layer, one value per polygon, in order (see ATTRIBUTES)."""
    kept_without_pre_event: int | None = None
    """With --require-vegetation-loss: the landslides kept without any usable pre-event pixel
    (``change_evidence`` "none"); None without the filter."""

    @property
    def total_area_m2(self) -> float:
        return float(self.areas_m2.sum())


def block_polygons(probability: np.ndarray, threshold: float, grid: Grid, row: int,
                   col: int, min_area_m2: float = 0.0) -> list[bytes]:
    """WKB polygons of the pixels >= threshold (4-connected) of block (row, col), in pixel
    coordinates of the whole scene (integers: the pieces of a landslide cut by a block border
    share their border exactly). ``probability`` is the block as stored (NaN = nodata).

    Components that lie inside the block (touching none of its borders with another block) and
    are clearly smaller than ``min_area_m2`` are left out: ``merge_block_polygons`` would drop
    them anyway, and a noisy map has hundreds of thousands of them."""
    win = grid.block_window(row, col)
    y0, x0 = int(win.row_off), int(win.col_off)
    h = min(int(win.height), grid.height - y0)
    w = min(int(win.width), grid.width - x0)
    if h <= 0 or w <= 0:
        return []
    binary = (np.nan_to_num(probability[:h, :w], nan=-1.0) >= threshold).astype(np.uint8)
    if not binary.any():
        return []
    if min_area_m2 > 0:
        _drop_small_inner_components(binary, grid, y0, x0, min_area_m2)
    where = Affine.translation(x0, y0)
    return [shapely.to_wkb(shape(g)) for g, _ in
            rasterio.features.shapes(binary, mask=binary, connectivity=4, transform=where)]


def _drop_small_inner_components(binary: np.ndarray, grid: Grid, y0: int, x0: int,
                                 min_area_m2: float) -> None:
    """Zero, in place, the 4-connected components of ``binary`` (a block at (y0, x0)) that
    touch no inner block border and whose area is below ``min_area_m2`` by more than rounding
    (the borderline ones are left to the polygons' own areas, as ``polygonize`` decides)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
    h, w = binary.shape
    a, b, _, d, e, _ = grid.transform
    area = stats[:, cv2.CC_STAT_AREA] * abs(a * e - b * d)
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right, bottom = left + stats[:, cv2.CC_STAT_WIDTH], top + stats[:, cv2.CC_STAT_HEIGHT]
    cut = (((left == 0) & (x0 > 0)) | ((right == w) & (x0 + w < grid.width))
           | ((top == 0) & (y0 > 0)) | ((bottom == h) & (y0 + h < grid.height)))
    drop = (area < min_area_m2 * (1 - 1e-6)) & ~cut
    drop[0] = False  # the background
    if drop.any():
        binary[drop[labels]] = 0


def merge_block_polygons(pieces: list[bytes], grid: Grid, min_area_m2: float) -> list[Polygon]:
    """The landslides of the whole scene from the blocks' pixel-coordinate polygons.

    Pieces that reach an inner block border are unioned (pieces that share an edge are one
    4-connected landslide; pieces meeting at a corner stay apart, as in ``polygonize``); then
    every polygon goes to the scene's CRS, polygons under ``min_area_m2`` are dropped and smaller
    holes filled, exactly as ``polygonize`` does. Sorted north to south, then west to east, so
    the result does not depend on the order in which blocks finished.
    """
    if not pieces:
        return []
    polys = shapely.from_wkb(np.asarray(pieces, dtype=object))
    minx, miny, maxx, maxy = shapely.bounds(polys).T
    b = grid.block
    cut = (((minx % b == 0) & (minx > 0)) | ((maxx % b == 0) & (maxx < grid.width))
           | ((miny % b == 0) & (miny > 0)) | ((maxy % b == 0) & (maxy < grid.height)))
    joined = _union_touching(polys[cut])
    polys = np.concatenate([polys[~cut], np.asarray(joined, dtype=object)])
    minx, miny, maxx, maxy = shapely.bounds(polys).T
    polys = polys[np.lexsort((maxx, maxy, minx, miny))]
    a, bb, c, d, e, f = grid.transform
    # x = c + col * a + row * b: the order of GDAL's own pixel-to-map transform
    on_map = shapely.transform(polys, lambda xy: np.stack(
        [c + xy[:, 0] * a + xy[:, 1] * bb, f + xy[:, 0] * d + xy[:, 1] * e], axis=1))
    return _apply_min_area(on_map, min_area_m2)


def _apply_min_area(polys: np.ndarray, min_area_m2: float) -> list[Polygon]:
    """Drop polygons under ``min_area_m2`` and fill their holes under it, as ``polygonize``
    does, with the hole areas computed in one vectorised call (a noisy granule has half a
    million holes)."""
    polys = polys[~(shapely.area(polys) < min_area_m2)]
    rings, owner = shapely.get_rings(polys, return_index=True)
    first = np.r_[True, owner[1:] != owner[:-1]]  # each polygon's exterior comes first
    holes = np.flatnonzero(~first)
    small = np.zeros(len(rings), dtype=bool)
    small[holes] = shapely.area(shapely.polygons(rings[holes])) < min_area_m2
    kept = []
    starts = np.flatnonzero(first)
    for k, poly in enumerate(polys):
        lo, hi = starts[k], starts[k + 1] if k + 1 < len(starts) else len(rings)
        if small[lo:hi].any():
            poly = Polygon(rings[lo], [r for r, s in zip(rings[lo + 1 : hi], small[lo + 1 : hi],
                                                         strict=True) if not s])
        kept.append(poly)
    return kept


def _union_touching(polys: np.ndarray) -> list:
    """The polygons after unioning each group of them that touch (transitively): one union
    per group, not one of them all (on a granule, 29 s for one union of 20,000 pieces spread
    over the scene). A group of pieces that meet only at corners falls apart again into them."""
    if not len(polys):
        return []
    left, right = shapely.STRtree(polys).query(polys, predicate="intersects")
    groups = connected_groups(len(polys), left[left < right], right[left < right])
    out: list = []
    for members in groups:
        if len(members) == 1:
            out.append(polys[members[0]])
        else:
            out.extend(shapely.get_parts(shapely.union_all(polys[members])))
    return out


def label_strips(polygons: list[Polygon], transform: Affine, height: int, width: int,
                 strip: int) -> Iterator[tuple[Window, np.ndarray]]:
    """Row strips of a raster, each with its int32 labels: i + 1 where polygons[i] covers a
    pixel's centre (the pixels the mask sets), 0 elsewhere. Only the polygons that meet a strip
    are burnt into it."""
    tree = shapely.STRtree(polygons)
    for y0 in range(0, height, strip):
        window = Window(0, y0, width, min(strip, height - y0))
        labels = np.zeros((window.height, width), dtype=np.int32)
        hits = tree.query(shapely.box(*rasterio.windows.bounds(window, transform)))
        if len(hits):
            labels = rasterio.features.rasterize(
                [(polygons[i], i + 1) for i in hits], out_shape=labels.shape,
                transform=rasterio.windows.transform(window, transform), fill=0, dtype="int32")
        yield window, labels


def write_rasters(store: str | Path, predictions: str | Path, grid: Grid,
                  polygons: list[Polygon], probability_tif: Path, mask_tif: Path,
                  change_tif: Path | None = None) -> dict[str, np.ndarray]:
    """One pass over the tile store and the prediction store, a block row at a time: the
    probability GeoTIFF, the mask burnt from ``polygons`` (1 on their pixels, 0 elsewhere,
    255 where invalid) and each polygon's statistics (returned, one array each):
    ``mean_prob`` (as ``mean_probabilities``), ``max_prob``, ``mean_slope_deg``,
    ``elev_min_m``, ``elev_max_m``; and when ``change_tif`` is given (the prediction store
    holds this run's pre-event ``change``), the rdNDVI GeoTIFF and the mean
    of each change layer (``ndvi_pre``, ``ndvi_post``, ``rdndvi``). The polygons are
    rasterised once for all of it."""
    group, found = open_group(store), open_predictions(predictions)
    prob, valid, image = found[PROBABILITY], group[VALID], group[IMAGE]
    change = found[CHANGE] if change_tif is not None else None
    bands = list(group.attrs["bands"])
    terrain = [bands.index("slope"), bands.index("DEM")]
    n = len(polygons)
    p_stats, slope_stats, dem_stats = ZoneStats(n), ZoneStats(n), ZoneStats(n)
    change_stats = [ZoneStats(n) for _ in LAYERS] if change is not None else []
    strips = label_strips(polygons, Affine(*grid.transform), grid.height, grid.width, grid.block)
    with contextlib.ExitStack() as files:
        pdst = files.enter_context(rasterio.open(probability_tif, "w",
                                                 **grid_profile(grid, "float32", np.nan)))
        mdst = files.enter_context(rasterio.open(mask_tif, "w",
                                                 **grid_profile(grid, "uint8", MASK_NODATA)))
        cdst = files.enter_context(rasterio.open(change_tif, "w", **grid_profile(
            grid, "float32", np.nan))) if change is not None else None
        for window, labels in strips:
            y0, y1 = window.row_off, window.row_off + window.height
            p = prob[y0:y1, : grid.width]
            ok = valid[y0:y1, : grid.width] == 1
            pdst.write(p, 1, window=window)
            layers = change[:, y0:y1, : grid.width] if change is not None else None
            if cdst is not None:
                cdst.write(layers[LAYERS.index("rdndvi")], 1, window=window)
            if labels.any():
                p_stats.add(labels, p)
                lo = min(terrain)
                both = image[lo : max(terrain) + 1, y0:y1, : grid.width]
                slope, dem = both[terrain[0] - lo], both[terrain[1] - lo]
                inside = np.where(ok, labels, 0)
                slope_stats.add(inside, slope)
                dem_stats.add(inside, dem)
                for stats, layer in zip(change_stats, layers if layers is not None else [],
                                        strict=True):
                    stats.add(inside, layer)
            out = (labels > 0).astype(np.uint8)
            out[~ok] = MASK_NODATA
            mdst.write(out, 1, window=window)
    result = {"mean_prob": p_stats.mean(), "max_prob": p_stats.maximum(),
              "mean_slope_deg": slope_stats.mean(), "elev_min_m": dem_stats.minimum(),
              "elev_max_m": dem_stats.maximum()}
    if change_stats:
        result.update({name: stats.mean() for name, stats in zip(LAYERS, change_stats,
                                                                    strict=True)})
    return result


def change_means(store: str | Path, predictions: str | Path, grid: Grid,
                 polygons: list[Polygon]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per polygon, from the store's ``change`` array over its valid pixels: the number of
    pixels usable on both dates (a defined NDVI on either date), and the mean NDVI_pre and
    rdNDVI over the pixels where each is defined (NaN: none)."""
    change, valid = open_predictions(predictions)[CHANGE], open_group(store)[VALID]
    n = len(polygons)
    usable, pre, rd = ZoneStats(n), ZoneStats(n), ZoneStats(n)
    k_pre, k_post, k_rd = (LAYERS.index(name) for name in ("ndvi_pre", "ndvi_post", "rdndvi"))
    for window, labels in label_strips(polygons, Affine(*grid.transform), grid.height,
                                       grid.width, grid.block):
        if labels.any():
            y0, y1 = window.row_off, window.row_off + window.height
            inside = np.where(valid[y0:y1, : grid.width] == 1, labels, 0)
            layers = change[:, y0:y1, : grid.width]
            seen = np.isfinite(layers[k_pre]) | np.isfinite(layers[k_post])
            usable.add(np.where(seen, inside, 0), np.ones(seen.shape))
            pre.add(inside, layers[k_pre])
            rd.add(inside, layers[k_rd])
    return usable.count[1:], pre.mean(), rd.mean()


def vegetation_loss_filter(store: str | Path, predictions: str | Path, grid: Grid,
                           polygons: list[Polygon], require_loss: float
                           ) -> tuple[list[Polygon], np.ndarray]:
    """The polygons --require-vegetation-loss ``require_loss`` keeps, and each one's
    ``change_evidence`` (``products.change.vegetation_evidence``: LOSS or NO_EVIDENCE)."""
    if not polygons:
        return [], np.zeros(0, dtype="<U4")
    evidence = vegetation_evidence(*change_means(store, predictions, grid, polygons),
                                   require_loss)
    keep = evidence != ""
    return [p for p, k in zip(polygons, keep, strict=True) if k], evidence[keep]


def write_polygons(path: Path, landslides: Landslides, crs_wkt: str, *,
                   metadata: dict[str, str] | None = None, driver: str = "GPKG") -> None:
    """One polygon per landslide with its area (m2), mean probability and the landslides'
    further ``attributes``, as a GeoPackage (``driver="GeoJSON"``: RFC 7946, in WGS 84);
    ``metadata`` (threshold, model, ...) goes into the layer's metadata."""
    n = len(landslides.polygons)
    names = ["id", "area_m2", "mean_prob"]
    data: list[np.ndarray] = [np.arange(1, n + 1, dtype=np.int32),
                              landslides.areas_m2.astype(np.float64),
                              landslides.mean_probability.astype(np.float64)]
    for name, values in landslides.attributes.items():
        names.append(name)
        data.append(_column(values))
    geoms = landslides.polygons
    options = {}
    if driver == "GeoJSON":
        geoms = _to_wgs84(geoms, crs_wkt)
        crs_wkt = "EPSG:4326"
        options = {"RFC7946": "YES"}
        if metadata:  # GeoJSON has no layer metadata: a member of the FeatureCollection
            options["FOREIGN_MEMBERS_COLLECTION"] = json.dumps({"metadata": metadata})
    pyogrio.raw.write(
        str(path),
        geometry=np.array([shapely.to_wkb(p) for p in geoms], dtype=object),
        field_data=data, fields=names, crs=crs_wkt, geometry_type="Polygon", driver=driver,
        layer="landslides", layer_metadata=metadata, layer_options=options,
    )


def _column(values: np.ndarray | list) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "US":
        return values.astype(object)
    return values


def _to_wgs84(polygons: list[Polygon], crs_wkt: str) -> np.ndarray:
    from rasterio.warp import transform

    src = CRS.from_wkt(crs_wkt)

    def reproject(xy: np.ndarray) -> np.ndarray:
        lon, lat = transform(src, "EPSG:4326", xy[:, 0], xy[:, 1])
        return np.stack([lon, lat], axis=1)

    return shapely.transform(np.asarray(polygons, dtype=object), reproject)


def centroids_lonlat(polygons: list[Polygon], crs_wkt: str) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (WGS 84) of each polygon's centroid."""
    from rasterio.warp import transform

    if not polygons:
        return np.zeros(0), np.zeros(0)
    c = shapely.centroid(np.asarray(polygons, dtype=object))
    lon, lat = transform(CRS.from_wkt(crs_wkt), "EPSG:4326", shapely.get_x(c), shapely.get_y(c))
    return np.asarray(lon), np.asarray(lat)
