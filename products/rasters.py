"""From the prediction store to GeoTIFFs: streamed block by block, then one copy to a COG.

GDAL's COG driver only copies from an existing dataset, so each raster is first written as a
plain tiled GeoTIFF by windows (bounded memory, any scene size) and then converted in one
streamed `rasterio.shutil.copy`, with nearest-neighbour overviews for the mask.
"""

from collections.abc import Iterator
from pathlib import Path

import rasterio
import rasterio.shutil
from affine import Affine

from tiler.grid import Grid

MASK_NODATA = 255
PROVENANCE_TAG = "LANDSLIDE_PROVENANCE"
"""The tag (GeoTIFF metadata, PNG text) that names the identity a published file was made
from (``common.provenance``; report.json's ``provenance.products.digest``)."""


def tag_raster(path: Path, tags: dict[str, str]) -> None:
    """Add dataset tags to a GeoTIFF (before its copy to a COG, which keeps them)."""
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**tags)


def tag_png(path: Path, tags: dict[str, str]) -> None:
    """Add text chunks to a PNG (its pixels unchanged)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in tags.items():
        info.add_text(key, value)
    with Image.open(path) as img:
        img.load()
        tmp = path.with_name(f".{path.name}.tagged.png")
        img.save(tmp, pnginfo=info)
    tmp.replace(path)


def grid_profile(grid: Grid, dtype: str, nodata: float | int) -> dict:
    """A tiled GeoTIFF profile on exactly the scene's grid (unpadded)."""
    return {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": dtype,
        "nodata": nodata,
        "crs": rasterio.crs.CRS.from_wkt(grid.crs_wkt),
        "transform": Affine(*grid.transform),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
    }


def row_strips(grid: Grid) -> Iterator[tuple[int, int]]:
    """(y0, y1) strips of one block height over the unpadded scene."""
    for y0 in range(0, grid.height, grid.block):
        yield y0, min(y0 + grid.block, grid.height)


def to_cog(src: Path, dst: Path, resampling: str) -> None:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF with internal overviews."""
    rasterio.shutil.copy(
        str(src),
        str(dst),
        driver="COG",
        COMPRESS="DEFLATE",
        BLOCKSIZE=512,
        OVERVIEW_RESAMPLING=resampling,
        OVERVIEWS="AUTO",
        NUM_THREADS="ALL_CPUS",
        BIGTIFF="IF_SAFER",
    )
