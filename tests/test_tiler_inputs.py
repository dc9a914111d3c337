"""Inputs as users really have them, at the tiler: geographic and non-10 m grids, digital
numbers, declared conventions, bands of another footprint, truncated files, empty DEMs and
products without metadata. Each case gave a finished-looking wrong store before; now it is
either mapped correctly or refused with one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client, LocalCluster
from rasterio.crs import CRS
from rasterio.shutil import copy as rio_copy
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points

from common.errors import InputError, OutputError, StoreError
from jobs import tile as tile_job
from tiler.bands import BANDS, CONVENTION, CONVENTION_TAG, L4S_RELEASE_CONVENTION, SPECTRAL
from tiler.grid import Grid
from tiler.run import tile_scene
from tiler.safe import read_safe
from tiler.sources import resolve_input
from tiler.stats import band_percentiles
from tiler.store import create_store, load_block, store_attrs

LON0, LAT0, DEG = 10.0, 45.0, 0.0001  # about 7.9 m x 11.1 m pixels
UTM_X0, UTM_Y0 = 600_000.0, 5_000_000.0


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def write_raster(path: Path, data: np.ndarray, crs: str, transform, nodata=None,
                 tags: dict | None = None, **kw) -> Path:
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata, tiled=True, blockxsize=64, blockysize=64, **kw) as ds:
        ds.write(data)
        if tags:
            ds.update_tags(**tags)
    return path


def reflectance(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05, 0.3, (12, h, w)).astype("float32")


def geo_stack(path: Path, h: int = 120, w: int = 100, **kw) -> Path:
    """A 14-band stack in EPSG:4326 whose B1/B2 encode their own lon/lat (odc-geo style):
    B1 = (lon - 10) * 100, B2 = (lat - 45) * 100 at the pixel centre."""
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    lon = LON0 + (cols + 0.5) * DEG
    lat = LAT0 + h * DEG - (rows + 0.5) * DEG
    data = np.zeros((14, h, w), "float32")
    data[:12] = reflectance(h, w)
    data[0], data[1] = (lon - LON0) * 100, (lat - LAT0) * 100
    data[12], data[13] = 10.0, 800.0
    return write_raster(path, data, "EPSG:4326", from_origin(LON0, LAT0 + h * DEG, DEG, DEG),
                        **kw)


def band_folder(folder: Path, bands: dict[str, np.ndarray], crs: str, transform,
                shifts: dict[str, tuple[float, float]] | None = None, nodata=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for band, data in bands.items():
        t = transform
        if shifts and band in shifts:
            t = from_origin(transform.c + shifts[band][0], transform.f + shifts[band][1],
                            transform.a, -transform.e)
        write_raster(folder / f"T32TNR_20240101_B{band[1:].zfill(2)}.tif", data, crs, t,
                     nodata=nodata)
    return folder


def utm_bands(folder: Path, h: int = 200, w: int = 200, scale: float = 1.0, dtype="float32",
              offset: float = 0.0, **kw) -> Path:
    data = reflectance(h, w, seed=1) * scale + offset
    bands = {b: data[i].astype(dtype) for i, b in enumerate(SPECTRAL)}
    return band_folder(folder, bands, "EPSG:32632", from_origin(UTM_X0, UTM_Y0, 10, 10), **kw)


def utm_dem(path: Path, value: float | None = 500.0, nodata=-9999.0) -> Path:
    data = np.full((60, 60), value if value is not None else nodata, "float32")
    return write_raster(path, data, "EPSG:32632", from_origin(UTM_X0 - 500, UTM_Y0 + 500, 50, 50),
                        nodata=nodata)


# -- 1. geographic and non-10 m grids -------------------------------------------------------

def test_geographic_stack_goes_on_10m_utm_with_every_pixel_in_place(tmp_path, client):
    scene = geo_stack(tmp_path / "geo.tif")
    spec = resolve_input(scene)
    assert CRS.from_wkt(spec.grid.crs_wkt).to_epsg() == 32632  # UTM zone of lon 10.005
    assert spec.grid.res == (10.0, 10.0)
    assert spec.details["grid"]["resampled_from"]["reason"] == "geographic CRS (degrees)"
    store = tmp_path / "s.zarr"
    tile_scene(scene, store, client=client, progress=False)
    image, valid = load_block(store, 0, 0)
    grid = spec.grid
    rows, cols = np.nonzero(valid[: grid.height, : grid.width])
    pick = np.random.default_rng(0).choice(rows.size, 200, replace=False)
    r, c = rows[pick], cols[pick]
    x = grid.transform[2] + (c + 0.5) * 10
    y = grid.transform[5] - (r + 0.5) * 10
    lon, lat = (np.asarray(v) for v in warp_points(CRS.from_epsg(32632), CRS.from_epsg(4326),
                                                       x, y))
    # Bilinear resampling of a linear field is exact away from the outermost source pixel
    # centres (it clamps there): a pixel misplaced by one shows as 0.08 or more.
    inner = ((lon > LON0 + DEG) & (lon < LON0 + 99 * DEG)
             & (lat > LAT0 + DEG) & (lat < LAT0 + 119 * DEG))
    assert inner.sum() > 150
    r, c, lon, lat = r[inner], c[inner], lon[inner], lat[inner]
    np.testing.assert_allclose(image[0, r, c], (lon - LON0) * 100, atol=2e-4)
    np.testing.assert_allclose(image[1, r, c], (lat - LAT0) * 100, atol=2e-4)
    assert store_attrs(store)["source"]["grid"]["crs"] == "EPSG:32632"


def test_geographic_band_folder_slope_in_degrees_of_the_ground(tmp_path, client):
    """A DEM rising 10 m per 100 m northward, in EPSG:4326 like the band files: slope 5.71 deg
    (it was about 90 when degrees were taken for metres)."""
    h, w = 100, 100
    t = from_origin(LON0, LAT0 + h * DEG, DEG, DEG)
    data = reflectance(h, w, seed=2)
    folder = band_folder(tmp_path / "bands", {b: data[i] for i, b in enumerate(SPECTRAL)},
                         "EPSG:4326", t)
    rows = np.arange(-20, h + 20)
    lat = LAT0 + h * DEG - (rows + 0.5) * DEG
    dem = np.repeat((0.1 * (lat - LAT0) * 111_132.0)[:, None], w + 40, axis=1)
    dem_path = write_raster(tmp_path / "dem.tif", dem.astype("float32"), "EPSG:4326",
                            from_origin(LON0 - 20 * DEG, LAT0 + (h + 20) * DEG, DEG, DEG))
    store = tmp_path / "s.zarr"
    tile_scene(folder, store, dem=dem_path, client=client, progress=False)
    image, valid = load_block(store, 0, 0)
    slope = image[BANDS.index("slope")][valid == 1]
    assert np.median(slope) == pytest.approx(np.degrees(np.arctan(0.1)), abs=0.15)


def test_20m_stack_goes_on_a_10m_grid_in_its_own_crs(tmp_path):
    data = np.zeros((14, 50, 40), "float32")
    data[:12] = reflectance(50, 40)
    scene = write_raster(tmp_path / "s20.tif", data, "EPSG:32632",
                         from_origin(UTM_X0, UTM_Y0, 20, 20))
    grid = resolve_input(scene).grid
    assert CRS.from_wkt(grid.crs_wkt).to_epsg() == 32632
    assert (grid.height, grid.width, grid.res) == (100, 80, (10.0, 10.0))
    assert grid.transform[2] == UTM_X0 and grid.transform[5] == UTM_Y0


def test_web_mercator_is_not_taken_for_ground_metres(tmp_path):
    data = np.zeros((14, 40, 40), "float32")
    data[:12] = reflectance(40, 40)
    scene = write_raster(tmp_path / "merc.tif", data, "EPSG:3857",
                         from_origin(1_113_195.0, 5_621_521.0, 10, 10))
    spec = resolve_input(scene)
    assert CRS.from_wkt(spec.grid.crs_wkt).to_epsg() == 32632
    assert "Mercator" in spec.details["grid"]["resampled_from"]["reason"]
    assert spec.grid.width < 40  # 10 Mercator metres are about 7 ground metres at 45 N


# -- 2. digital numbers taken for reflectance ---------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_digital_numbers_in_band_files_are_refused_with_the_option_to_pass(tmp_path, dtype):
    folder = utm_bands(tmp_path / "b", scale=10_000, offset=1000, dtype=dtype)
    dem = utm_dem(tmp_path / "dem.tif")
    if dtype == "float32":
        with pytest.raises(InputError, match=r"B01.*median .*--quantification 10000"):
            resolve_input(folder, dem)
    spec = resolve_input(folder, dem, offset=-1000, quantification=10_000)
    b2 = spec.bands[1]
    assert (b2.offset, b2.quantification) == (-1000, 10_000)
    assert spec.details["conversion"]["B2"] == {"offset": -1000, "quantification": 10_000}


def test_conversion_options_are_applied_to_float_files(tmp_path, client):
    folder = utm_bands(tmp_path / "b", scale=10_000, offset=1000)
    store = tmp_path / "s.zarr"
    tile_scene(folder, store, dem=utm_dem(tmp_path / "dem.tif"), client=client, offset=-1000,
               quantification=10_000, progress=False)
    image, valid = load_block(store, 0, 0)
    expected = reflectance(200, 200, seed=1)[1]
    np.testing.assert_allclose(image[1, :200, :200], expected, atol=2e-6)


def test_uint16_stack_of_digital_numbers_is_refused_and_converted_on_request(tmp_path):
    data = np.zeros((14, 64, 64), "uint16")
    data[:12] = (reflectance(64, 64) * 10_000).astype("uint16")
    data[12], data[13] = 10, 800
    scene = write_raster(tmp_path / "dn.tif", data, "EPSG:32632",
                         from_origin(UTM_X0, UTM_Y0, 10, 10))
    with pytest.raises(InputError, match="--quantification 10000.*--convention l4s-release"):
        resolve_input(scene)
    spec = resolve_input(scene, quantification=10_000)
    assert spec.bands[3].quantification == 10_000 and spec.slope.quantification == 1.0


# -- 3. a stack says what it holds ----------------------------------------------------------

def test_stack_tag_and_option_set_the_convention_the_store_records(tmp_path, client):
    data = np.zeros((14, 64, 64), "float32")
    data[:] = 1.2  # release units: means about 1, slope and DEM too
    tagged = write_raster(tmp_path / "l4s.tif", data, "EPSG:32632",
                          from_origin(UTM_X0, UTM_Y0, 10, 10),
                          tags={CONVENTION_TAG: L4S_RELEASE_CONVENTION})
    assert resolve_input(tagged).convention == L4S_RELEASE_CONVENTION
    store = tmp_path / "s.zarr"
    tile_scene(tagged, store, client=client, progress=False)
    assert store_attrs(store)["convention"] == L4S_RELEASE_CONVENTION
    image, _ = load_block(store, 0, 0)
    assert np.allclose(image[:, :64, :64], 1.2)  # stored as it is, not converted
    untagged = write_raster(tmp_path / "plain.tif", data, "EPSG:32632",
                            from_origin(UTM_X0, UTM_Y0, 10, 10))
    assert resolve_input(untagged, convention=L4S_RELEASE_CONVENTION).convention == \
        L4S_RELEASE_CONVENTION
    assert resolve_input(tagged, convention=CONVENTION).convention == CONVENTION
    with pytest.raises(InputError, match="a stack in l4s-release is stored as it is"):
        resolve_input(tagged, quantification=10_000)


def test_unknown_convention_tag_is_refused(tmp_path):
    data = np.full((14, 32, 32), 0.1, "float32")
    scene = write_raster(tmp_path / "odd.tif", data, "EPSG:32632",
                         from_origin(UTM_X0, UTM_Y0, 10, 10), tags={CONVENTION_TAG: "toa-dn"})
    with pytest.raises(InputError, match="odd.tif: unknown convention 'toa-dn'"):
        resolve_input(scene)


# -- 9. bands of another footprint ----------------------------------------------------------

@pytest.mark.parametrize("case,band", [("cropped", "B8"), ("shifted", "B11")])
def test_a_band_of_another_footprint_is_refused_naming_it(tmp_path, case, band):
    data = reflectance(200, 200, seed=3)
    bands = {b: data[i] for i, b in enumerate(SPECTRAL)}
    shifts = None
    if case == "cropped":
        bands["B8"] = bands["B8"][:, :100]
    else:
        shifts = {"B11": (3000.0, 0.0)}
    folder = band_folder(tmp_path / "b", bands, "EPSG:32632",
                         from_origin(UTM_X0, UTM_Y0, 10, 10), shifts=shifts)
    with pytest.raises(InputError, match=rf"_B{band[1:].zfill(2)}\.tif: band {band} covers"):
        resolve_input(folder, utm_dem(tmp_path / "dem.tif"))


def test_a_20m_band_on_the_same_footprint_is_accepted(tmp_path):
    data = reflectance(200, 200, seed=4)
    bands = {b: data[i] for i, b in enumerate(SPECTRAL)}
    bands["B11"] = data[10, ::2, ::2]
    folder = band_folder(tmp_path / "b", bands, "EPSG:32632",
                         from_origin(UTM_X0, UTM_Y0, 10, 10))
    with rasterio.open(next(folder.glob("*_B11.tif")), "r+") as ds:
        ds.transform = from_origin(UTM_X0, UTM_Y0, 20, 20)
    assert resolve_input(folder, utm_dem(tmp_path / "dem.tif")).grid.width == 200


# -- 10. truncated files ----------------------------------------------------------------------

def test_truncated_geotiff_is_one_line_naming_the_file(tmp_path, client, capsys):
    data = np.zeros((14, 512, 512), "float32")
    data[:12] = reflectance(512, 512)
    plain = write_raster(tmp_path / "plain.tif", data, "EPSG:32632",
                         from_origin(UTM_X0, UTM_Y0, 10, 10))
    scene = tmp_path / "cut.tif"
    rio_copy(plain, scene, driver="COG", BLOCKSIZE=128, OVERVIEWS="NONE")
    raw = scene.read_bytes()
    scene.write_bytes(raw[: int(len(raw) * 0.6)])
    with pytest.raises(InputError, match=r"cut\.tif: cannot read"):
        tile_scene(scene, tmp_path / "s.zarr", client=client, progress=False)
    out = tmp_path / "cli.zarr"
    assert tile_job.main([str(scene), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cut.tif: cannot read" in err
    assert not (out / "zarr.json").exists() or not store_attrs(out)["complete"]


# -- 11. the right one-liner ------------------------------------------------------------------

def test_all_nodata_dem_is_blamed_not_the_scene(tmp_path):
    folder = utm_bands(tmp_path / "b")
    with pytest.raises(InputError, match=r"dem\.tif: the DEM has no data over the scene"):
        resolve_input(folder, utm_dem(tmp_path / "dem.tif", value=None))


def test_safe_without_metadata_says_so(tmp_path):
    safe = utm_bands(tmp_path / "S2A_MSIL2A_20240101T000000_N0510_R000_T32TNR.SAFE")
    with pytest.raises(InputError, match="looks like a SAFE product but has no MTD_MSIL2A.xml"):
        resolve_input(safe, utm_dem(tmp_path / "dem.tif"))


def test_non_numeric_quantification_in_safe_metadata(tmp_path):
    safe = tmp_path / "P.SAFE"
    safe.mkdir()
    (safe / "MTD_MSIL2A.xml").write_text(
        "<Level-2A_User_Product><BOA_QUANTIFICATION_VALUE>ten thousand"
        "</BOA_QUANTIFICATION_VALUE></Level-2A_User_Product>")
    with pytest.raises(InputError, match="BOA_QUANTIFICATION_VALUE is not a number"):
        read_safe(safe)


def test_band_statistics_of_an_empty_store_are_a_store_error(tmp_path):
    grid = Grid(CRS.from_epsg(32632).to_wkt(), (10, 0, UTM_X0, 0, -10, UTM_Y0), 128, 128)
    store = create_store(tmp_path / "s.zarr", grid, {"kind": "test"})
    with pytest.raises(StoreError, match="no valid pixel"):
        band_percentiles(store, grid, [2, 98])


def test_preview_that_cannot_be_written_is_an_output_error(tmp_path, client):
    from tests.oracles import write_preview

    data = np.zeros((14, 64, 64), "float32")
    data[:12] = reflectance(64, 64)
    scene = write_raster(tmp_path / "s.tif", data, "EPSG:32632",
                         from_origin(UTM_X0, UTM_Y0, 10, 10))
    store = tmp_path / "s.zarr"
    tile_scene(scene, store, client=client, progress=False)
    with pytest.raises(OutputError, match="could not write the preview"):
        write_preview(store, resolve_input(scene).grid, [], tmp_path / "no" / "p.png")


def test_store_in_a_missing_folder_is_one_line(tmp_path, capsys):
    scene = geo_stack(tmp_path / "geo.tif")
    assert tile_job.main([str(scene), "--out", str(tmp_path / "nope" / "s.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
