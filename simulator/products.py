# ruff: noqa: E501  (the MTD_MSIL2A.xml template keeps the real file's long lines)
"""Sentinel-2-like products made from a synthetic 14-band scene (float32, NaN nodata, B1..B12,
slope, DEM, in the convention its ``CONVENTION_TAG`` names, ``s2-reflectance-v1`` when absent):
per-band files at native resolution, a coarser DEM in EPSG:4326, and a minimal L2A SAFE product
with real JPEG 2000 bands and metadata. They hold digital numbers and metres from reflectance
whatever the stack's convention (an ``l4s-release`` stack is converted back, exactly).

They let the tiler's readers be tested end to end on the formats real data come in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.fill import fillnodata
from rasterio.warp import reproject, transform_bounds

from common import owned
from common.errors import SimulatorError
from simulator import JOB
from simulator.l4s_release import L4S_RELEASE_SCALE
from tiler.bands import CONVENTION, CONVENTION_TAG, L4S_RELEASE_CONVENTION, SPECTRAL

NATIVE_RES: dict[str, int] = {
    "B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10,
    "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20,
}
S2_BAND_IDS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
)
QUANTIFICATION = 10000
DEM_RES_DEG = 0.00027
DEM_NODATA = -32768


def _file_tag(band: str) -> str:
    return "B8A" if band == "B8A" else f"B{int(band[1:]):02d}"


def _scene_index(band: str) -> int:
    """1-based band index in the 14-band scene (B8A is written from B8)."""
    return SPECTRAL.index("B8" if band == "B8A" else band) + 1


def _read_band(ds: rasterio.DatasetReader, index: int) -> np.ndarray:
    """Band ``index`` (1-based) of a 14-band scene in ``s2-reflectance-v1`` units, float32."""
    convention = ds.tags().get(CONVENTION_TAG, CONVENTION)
    band = ds.read(index).astype("float32")
    if convention == CONVENTION:
        return band
    if convention == L4S_RELEASE_CONVENTION:
        return band * np.float32(L4S_RELEASE_SCALE[index - 1])
    raise SimulatorError(f"{ds.name}: unknown {CONVENTION_TAG} {convention!r}")


def _downsampled_dn(ds: rasterio.DatasetReader, band: str, offset: int) -> tuple[
        np.ndarray, Affine]:
    """Band averaged onto its native grid (a factor of the 10 m scene), as uint16 DN."""
    factor = NATIVE_RES[band] // 10
    src = _read_band(ds, _scene_index(band))
    if factor == 1:
        dst, transform = src, ds.transform
    else:
        h, w = math.ceil(ds.height / factor), math.ceil(ds.width / factor)
        transform = ds.transform @ Affine.scale(factor)
        dst = np.full((h, w), np.nan, dtype="float32")
        reproject(src, dst, src_transform=ds.transform, src_crs=ds.crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=ds.crs, dst_nodata=np.nan,
                  resampling=Resampling.average)
    dn = np.where(np.isfinite(dst), np.clip(np.round(dst * QUANTIFICATION) + offset, 1, 65535),
                  0)
    return dn.astype("uint16"), transform


def _write_dn(path: Path, dn: np.ndarray, transform: Affine, crs: CRS, jp2: bool) -> None:
    profile = dict(height=dn.shape[0], width=dn.shape[1], count=1, dtype="uint16", crs=crs,
                   transform=transform, nodata=0)
    if jp2:
        # Like real S2 JP2: no nodata in the file (0 = nodata by convention), no .aux.xml.
        del profile["nodata"]
        profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES",
                       BLOCKXSIZE=1024, BLOCKYSIZE=1024)
    else:
        profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
    with rasterio.open(path, "w", **profile) as out:
        out.write(dn, 1)


def write_band_files(scene_tif: str | Path, out_dir: str | Path, *, tile_id: str = "T45RUL",
                     date: str = "20240101T050000") -> dict[str, Path]:
    """Per-band uint16 GeoTIFFs at native 10/20/60 m (DN = round(reflectance x 10000), 0 =
    nodata), named like ``T45RUL_20240101T050000_B02_10m.tif``, plus a B8A file (which the
    tiler must ignore). Returns band name -> path."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    names = {}
    with owned.output_folder(out_dir, JOB) as tmp, rasterio.open(scene_tif) as ds:
        for band in (*SPECTRAL, "B8A"):
            dn, transform = _downsampled_dn(ds, band, 0)
            names[band] = f"{tile_id}_{date}_{_file_tag(band)}_{NATIVE_RES[band]}m.tif"
            _write_dn(tmp / names[band], dn, transform, ds.crs, jp2=False)
    return {band: out_dir / name for band, name in names.items()}


def write_dem(scene_tif: str | Path, out_path: str | Path, *, margin_deg: float = 0.005,
              res_deg: float = DEM_RES_DEG) -> Path:
    """The scene's DEM band in EPSG:4326 at ~30 m (``res_deg``), int16, nodata -32768,
    covering the scene plus ``margin_deg`` on each side (bilinear)."""
    out_path = Path(out_path)
    with rasterio.open(scene_tif) as ds:
        dem = _read_band(ds, len(SPECTRAL) + 2)
        # A real DEM has data beyond the scene: extend the scene's DEM (nodata filled from
        # its neighbours, then edge-replicated) so the margin holds heights, not nodata.
        finite = np.isfinite(dem)
        if not finite.all():
            dem = fillnodata(np.where(finite, dem, 0), mask=finite.astype("uint8"),
                             max_search_distance=max(dem.shape))
        res_m = max(abs(ds.transform.a), abs(ds.transform.e))
        pad = math.ceil(2 * margin_deg * 111_320 / res_m) + 2
        dem = np.pad(dem, pad, mode="edge")
        src_transform = ds.transform @ Affine.translation(-pad, -pad)
        left, bottom, right, top = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds,
                                                    densify_pts=21)
        left, bottom = left - margin_deg, bottom - margin_deg
        right, top = right + margin_deg, top + margin_deg
        w = math.ceil((right - left) / res_deg)
        h = math.ceil((top - bottom) / res_deg)
        transform = Affine(res_deg, 0, left, 0, -res_deg, top)
        out = np.full((h, w), np.nan, dtype="float32")
        reproject(dem, out, src_transform=src_transform, src_crs=ds.crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs="EPSG:4326", dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
    dn = np.where(np.isfinite(out), np.clip(np.round(out), -32767, 32767), DEM_NODATA)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with owned.output_file(out_path, JOB) as tmp, \
            rasterio.open(tmp, "w", driver="GTiff", height=h, width=w, count=1, dtype="int16",
                          crs="EPSG:4326", transform=transform, nodata=DEM_NODATA,
                          compress="deflate") as dst:
        dst.write(dn.astype("int16"), 1)
    return out_path


def _has_offset(baseline: str) -> bool:
    return tuple(int(p) for p in baseline.split(".")) >= (4, 0)


_MTD = (
    """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
    <n1:General_Info>
        <Product_Info>
            <PRODUCT_START_TIME>{iso}</PRODUCT_START_TIME>
            <PRODUCT_STOP_TIME>{iso}</PRODUCT_STOP_TIME>
            <PRODUCT_URI>{name}</PRODUCT_URI>
            <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
            <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
            <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
            <GENERATION_TIME>{iso}</GENERATION_TIME>
            <Datatake datatakeIdentifier="GS2B_{date}_035414_N{baseline}">
      <SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
      <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
      <DATATAKE_SENSING_START>{iso}</DATATAKE_SENSING_START>
      <SENSING_ORBIT_NUMBER>67</SENSING_ORBIT_NUMBER>
      <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
    </Datatake>
<Query_Options completeSingleTile="true">
<PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
</Query_Options>
<Product_Organisation>
                <Granule_List>
                    <Granule datastripIdentifier="S2B_OPER_MSI_L2A_DS_SIMU_{date}_N{baseline}" granuleIdentifier="S2B_OPER_MSI_L2A_TL_SIMU_{date}_A035414_{tile}_N{baseline}" imageFormat="JPEG2000">
{image_files}
                    </Granule>
                </Granule_List>
</Product_Organisation>
        </Product_Info>
        <Product_Image_Characteristics>
            <Special_Values>
                <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
                <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
            </Special_Values>
            <Special_Values>
                <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
                <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
            </Special_Values>
            <Image_Display_Order>
                <RED_CHANNEL>3</RED_CHANNEL>
                <GREEN_CHANNEL>2</GREEN_CHANNEL>
                <BLUE_CHANNEL>1</BLUE_CHANNEL>
            </Image_Display_Order>
            <QUANTIFICATION_VALUES_LIST>
                <BOA_QUANTIFICATION_VALUE unit="none">{quant}</BOA_QUANTIFICATION_VALUE>
                <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
                <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
            </QUANTIFICATION_VALUES_LIST>
{offsets}        </Product_Image_Characteristics>
    </n1:General_Info>
</n1:Level-2A_User_Product>
"""
)


def safe_name(baseline: str = "05.10", tile_id: str = "T45RUL",
              date: str = "20240101T050000") -> str:
    """The folder name ``write_safe`` gives its product."""
    return f"S2B_MSIL2A_{date}_N{baseline.replace('.', '')}_R067_{tile_id}_{date}.SAFE"


def product_outputs() -> tuple[tuple[str, str], ...]:
    """(name, kind) of what ``jobs.synth scene`` writes beside scene.tif with the defaults:
    ``bands/``, ``dem.tif`` and the SAFE product."""
    return (("bands", "dir"), ("dem.tif", "file"), (safe_name(), "dir"))


def write_safe(scene_tif: str | Path, out_dir: str | Path, baseline: str = "05.10", *,
               tile_id: str = "T45RUL", date: str = "20240101T050000",
               finish: Callable[[Path], None] | None = None) -> Path:
    """A minimal L2A SAFE product: lossless JP2 bands at IMG_DATA/R10m|R20m|R60m (no B10, as
    in real L2A), DN = round(reflectance x 10000) + 1000 when ``baseline`` >= 04.00 (with
    ``BOA_ADD_OFFSET`` -1000 in the metadata) else without offset, 0 = nodata, and an
    MTD_MSIL2A.xml shaped like a real one. Returns the ``.SAFE`` folder.

    The product is built in a temporary folder (``finish``, when given, adds to it: the SCL)
    and renamed into place, replacing only an earlier product of ``jobs.synth``
    (``common.owned``)."""
    name = safe_name(baseline, tile_id, date)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with owned.output_folder(Path(out_dir) / name, JOB) as root:
        _fill_safe(root, name, scene_tif, baseline, tile_id, date)
        if finish is not None:
            finish(root)
    return Path(out_dir) / name


def _fill_safe(root: Path, name: str, scene_tif: str | Path, baseline: str, tile_id: str,
               date: str) -> None:
    offset = 1000 if _has_offset(baseline) else 0
    granule = f"L2A_{tile_id}_A035414_{date}"
    img = root / "GRANULE" / granule / "IMG_DATA"
    entries = []
    with rasterio.open(scene_tif) as ds:
        for res, bands in ((10, ("B2", "B3", "B4", "B8")),
                           (20, ("B5", "B6", "B7", "B8A", "B11", "B12")),
                           (60, ("B1", "B9"))):
            (img / f"R{res}m").mkdir(parents=True, exist_ok=True)
            for band in bands:
                stem = f"R{res}m/{tile_id}_{date}_{_file_tag(band)}_{res}m"
                dn, transform = _downsampled_dn(ds, band, offset)
                _write_dn(img / f"{stem}.jp2", dn, transform, ds.crs, jp2=True)
                entries.append(f"GRANULE/{granule}/IMG_DATA/{stem}")
            # Listed like the real product's non-band layers; the tiler must skip them.
            entries.append(f"GRANULE/{granule}/IMG_DATA/R{res}m/{tile_id}_{date}_TCI_{res}m")
            if res != 10:
                entries.append(f"GRANULE/{granule}/IMG_DATA/R{res}m/{tile_id}_{date}_SCL_{res}m")
    offsets = ""
    if offset:
        lines = "".join(f'        <BOA_ADD_OFFSET band_id="{i}">{-offset}</BOA_ADD_OFFSET>\n'
                        for i in range(len(S2_BAND_IDS)))
        offsets = (f"            <BOA_ADD_OFFSET_VALUES_LIST>\n{lines}"
                   "      </BOA_ADD_OFFSET_VALUES_LIST>\n")
    iso = f"{date[:4]}-{date[4:6]}-{date[6:8]}T{date[9:11]}:{date[11:13]}:{date[13:15]}.000Z"
    image_files = "\n".join(f"                        <IMAGE_FILE>{e}</IMAGE_FILE>"
                            for e in entries)
    (root / "MTD_MSIL2A.xml").write_text(_MTD.format(
        iso=iso, name=name, baseline=baseline, date=date, tile=tile_id,
        image_files=image_files, quant=QUANTIFICATION, offsets=offsets))
