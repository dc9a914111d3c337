"""Landslide polygons: polygonise the thresholded map, post-process, burn back the mask.

The final mask raster is the rasterisation of the kept polygons, so raster and vector always
agree: a polygon's area equals its pixel count times the pixel area.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import Polygon, shape

from tiler.grid import Grid
from tiler.rasters import MASK_NODATA, grid_profile
from tiler.store import open_group


@dataclass(frozen=True)
class Landslides:
    polygons: list[Polygon]
    areas_m2: np.ndarray
    mean_probability: np.ndarray

    @property
    def total_area_m2(self) -> float:
        return float(self.areas_m2.sum())


def polygonize(threshold_tif: Path, min_area_m2: float) -> list[Polygon]:
    """Polygons of the 1-pixels (4-connected) of a 0/1 raster, with GDAL's streaming polygoniser.

    Polygons smaller than min_area_m2 are dropped and holes smaller than it are filled.
    """
    kept = []
    with rasterio.open(threshold_tif) as src:
        band = rasterio.band(src, 1)
        for geom, _ in rasterio.features.shapes(band, mask=band, connectivity=4):
            poly = shape(geom)
            if poly.area < min_area_m2:
                continue
            holes = [r for r in poly.interiors if Polygon(r).area >= min_area_m2]
            kept.append(Polygon(poly.exterior, holes))
    return kept


def label_strips(polygons: list[Polygon], transform: Affine, height: int, width: int,
                 strip: int) -> Iterator[tuple[Window, np.ndarray]]:
    """Row strips of a raster, each with its int32 labels: i + 1 where polygons[i] covers a
    pixel's centre (the pixels burn_mask sets), 0 elsewhere. Only the polygons that meet a strip
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


def mean_probabilities(polygons: list[Polygon], probability_tif: Path,
                       strip: int = 1024) -> np.ndarray:
    """The mean probability over the pixels of each polygon, in one pass of labelled strips (a
    per-polygon windowed read cost 1.7 ms a polygon)."""
    n = len(polygons)
    sums, counts = np.zeros(n + 1), np.zeros(n + 1)
    with rasterio.open(probability_tif) as src:
        for window, labels in label_strips(polygons, src.transform, src.height, src.width, strip):
            if not labels.any():
                continue
            p = src.read(1, window=window)
            sel = (labels > 0) & np.isfinite(p)
            sums += np.bincount(labels[sel], weights=p[sel], minlength=n + 1)
            counts += np.bincount(labels[sel], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[1:] > 0, sums[1:] / counts[1:], np.nan)


def burn_mask(store: str | Path, grid: Grid, polygons: list[Polygon], path: Path) -> None:
    """The final uint8 mask: 1 inside kept polygons, 0 outside, 255 where the scene is nodata."""
    valid = open_group(store)["valid"]
    strips = label_strips(polygons, Affine(*grid.transform), grid.height, grid.width, grid.block)
    with rasterio.open(path, "w", **grid_profile(grid, "uint8", MASK_NODATA)) as dst:
        for window, labels in strips:
            y0, y1 = window.row_off, window.row_off + window.height
            out = (labels > 0).astype(np.uint8)
            out[valid[y0:y1, : grid.width] == 0] = MASK_NODATA
            dst.write(out, 1, window=window)


def write_polygons(path: Path, landslides: Landslides, crs_wkt: str) -> None:
    """One polygon per landslide with its area (m2) and mean probability, as a GeoPackage."""
    n = len(landslides.polygons)
    pyogrio.raw.write(
        str(path),
        geometry=np.array([shapely.to_wkb(p) for p in landslides.polygons], dtype=object),
        field_data=[
            np.arange(1, n + 1, dtype=np.int32),
            landslides.areas_m2.astype(np.float64),
            landslides.mean_probability.astype(np.float64),
        ],
        fields=["id", "area_m2", "mean_prob"],
        crs=crs_wkt,
        geometry_type="Polygon",
        driver="GPKG",
        layer="landslides",
    )


def landslides_from(threshold_tif: Path, probability_tif: Path, min_area_m2: float) -> Landslides:
    polygons = polygonize(threshold_tif, min_area_m2)
    return Landslides(
        polygons=polygons,
        areas_m2=np.array([p.area for p in polygons], dtype=np.float64),
        mean_probability=mean_probabilities(polygons, probability_tif),
    )
