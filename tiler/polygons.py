"""Landslide polygons: polygonise the thresholded map, post-process, burn back the mask.

The final mask raster is the rasterisation of the kept polygons, so raster and vector always
agree: a polygon's area equals its pixel count times the pixel area.
"""

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
from tiler.rasters import MASK_NODATA, grid_profile, row_strips
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


def mean_probabilities(polygons: list[Polygon], probability_tif: Path) -> np.ndarray:
    """The mean probability inside each polygon, read window by window."""
    means = np.zeros(len(polygons), dtype=np.float64)
    with rasterio.open(probability_tif) as src:
        for i, poly in enumerate(polygons):
            window = rasterio.features.geometry_window(src, [poly])
            p = src.read(1, window=window)
            inside = rasterio.features.geometry_mask(
                [poly], out_shape=p.shape, transform=src.window_transform(window), invert=True
            )
            means[i] = float(np.nanmean(p[inside])) if inside.any() else float("nan")
    return means


def burn_mask(store: str | Path, grid: Grid, polygons: list[Polygon], path: Path) -> None:
    """The final uint8 mask: 1 inside kept polygons, 0 outside, 255 where the scene is nodata."""
    tree = shapely.STRtree(polygons)
    valid = open_group(store)["valid"]
    transform = Affine(*grid.transform)
    with rasterio.open(path, "w", **grid_profile(grid, "uint8", MASK_NODATA)) as dst:
        for y0, y1 in row_strips(grid):
            window = Window(0, y0, grid.width, y1 - y0)
            wt = rasterio.windows.transform(window, transform)
            bounds = rasterio.windows.bounds(window, transform)
            hits = tree.query(shapely.box(*bounds))
            out = np.zeros((y1 - y0, grid.width), dtype=np.uint8)
            if len(hits):
                out = rasterio.features.rasterize(
                    [(polygons[i], 1) for i in hits], out_shape=out.shape, transform=wt,
                    fill=0, dtype="uint8",
                )
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
