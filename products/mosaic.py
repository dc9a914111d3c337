"""A mosaic of an event's per-scene rasters as a GDAL VRT: no pixel copied, any GIS opens it.

Only rasters that share a CRS and a pixel grid (same resolution, origins a whole number of
pixels apart, as neighbouring Sentinel-2 granules of one UTM zone are) can be mosaicked
without resampling; otherwise no mosaic is written and the reason is returned. In overlaps a
later raster's valid pixels cover an earlier one's; nodata is transparent.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio

_TYPES = {"float32": "Float32", "uint8": "Byte", "float64": "Float64", "uint16": "UInt16"}


def write_mosaic_vrt(rasters: list[Path], path: Path, final: Path | None = None,
                     tags: dict[str, str] | None = None) -> str | None:
    """Write ``path`` (a .vrt) over ``rasters``, which it names relative to ``final`` (where the
    VRT will be renamed to; default ``path``); returns None, or why no mosaic was written."""
    if not rasters:
        return "no raster to mosaic"
    infos = []
    for r in rasters:
        with rasterio.open(r) as src:
            infos.append((r, src.crs, src.transform, src.width, src.height, src.dtypes[0],
                          src.nodata))
    _, crs, t0, *_ = infos[0]
    for r, c, t, *_ in infos[1:]:
        if c != crs:
            return f"{r}: in {c}, not {crs} like {infos[0][0]}: no mosaic without resampling"
        if (t.a, t.b, t.d, t.e) != (t0.a, t0.b, t0.d, t0.e) or not (
                _whole((t.c - t0.c) / t0.a) and _whole((t.f - t0.f) / t0.e)):
            return f"{r}: its pixel grid is not that of {infos[0][0]}: no mosaic"
    left = min(t.c for _, _, t, *_ in infos)
    top = max(t.f for _, _, t, *_ in infos)
    right = max(t.c + w * t.a for _, _, t, w, *_ in infos)
    bottom = min(t.f + h * t.e for _, _, t, _, h, *_ in infos)
    width, height = round((right - left) / t0.a), round((bottom - top) / t0.e)
    dtype, nodata = infos[0][5], infos[0][6]
    nd = "nan" if nodata is not None and math.isnan(nodata) else repr(nodata)
    sources = []
    for r, _, t, w, h, *_ in infos:
        rel = os.path.relpath(r, (final or path).parent)
        sources.append(
            f'    <ComplexSource>\n'
            f'      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>\n'
            f'      <SourceBand>1</SourceBand>\n'
            f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>\n'
            f'      <DstRect xOff="{round((t.c - left) / t0.a)}" '
            f'yOff="{round((t.f - top) / t0.e)}" xSize="{w}" ySize="{h}"/>\n'
            + (f"      <NODATA>{nd}</NODATA>\n" if nodata is not None else "")
            + "    </ComplexSource>\n")
    xml = (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
           f"  <SRS>{escape(crs.to_wkt())}</SRS>\n"
           f"  <GeoTransform>{left!r}, {t0.a!r}, 0.0, {top!r}, 0.0, {t0.e!r}</GeoTransform>\n"
           + _metadata(tags or {})
           + f'  <VRTRasterBand dataType="{_TYPES[dtype]}" band="1">\n'
           + (f"    <NoDataValue>{nd}</NoDataValue>\n" if nodata is not None else "")
           + "".join(sources) + "  </VRTRasterBand>\n</VRTDataset>\n")
    path.write_text(xml)
    return None


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-6


def _metadata(tags: dict[str, str]) -> str:
    """The VRT's dataset metadata (what ``rasterio``'s ``tags()`` reads back)."""
    if not tags:
        return ""
    items = "".join(f'    <MDI key="{escape(k)}">{escape(v)}</MDI>\n' for k, v in tags.items())
    return f"  <Metadata>\n{items}  </Metadata>\n"
