"""The tiler on per-band folders, SAFE products (JP2, offsets) and DEMs in another CRS,
with files written by simulator.products from small synthetic scenes."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
from distributed import Client, LocalCluster
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject
from rasterio.warp import transform as warp_transform

from common.errors import InputError
from jobs import tile as tile_job
from simulator.products import write_band_files, write_dem, write_safe
from tiler.bands import BANDS, SPECTRAL
from tiler.run import tile_scene
from tiler.safe import read_safe
from tiler.sources import B10_FILL_REFLECTANCE, resolve_input
from tiler.store import open_tiles
from tiler.terrain import horn_slope

X0, Y0 = 600_005.0, 3_000_015.0  # UTM 45N, origin not on the 10/20/60 m lattice
CRS_UTM = "EPSG:32645"


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def ramp_scene(path: Path, height: int, width: int, nodata_rows: int = 0) -> Path:
    """14-band scene in the convention: spectral bands are linear ramps of the map x (even
    bands) or y (odd bands), so a misplaced pixel shows as a wrong value even after
    averaging and bilinear resampling; DEM a smooth hill; slope a placeholder."""
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    data = np.empty((14, height, width), dtype="float32")
    for b in range(12):
        ramp = cols / width if b % 2 == 0 else rows / height
        data[b] = 0.02 + 0.01 * b + 0.5 * ramp
    data[12] = 0.0
    data[13] = 800 + 300 * np.sin(rows / 90.0) * np.cos(cols / 70.0)
    if nodata_rows:
        data[:, :nodata_rows] = np.nan
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=14,
                       dtype="float32", crs=CRS_UTM, transform=from_origin(X0, Y0, 10, 10),
                       nodata=float("nan"), tiled=True) as ds:
        ds.write(data)
    return path


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    d = tmp_path_factory.mktemp("products")
    big = ramp_scene(d / "big.tif", 1090, 1061, nodata_rows=5)
    small = ramp_scene(d / "small.tif", 250, 230)
    return {
        "dir": d, "big": big, "small": small,
        "bands": write_band_files(big, d / "bands"), "dem": write_dem(big, d / "dem.tif"),
        "small_dem": write_dem(small, d / "small_dem.tif"),
    }


def _warp(path: Path, grid_shape, transform, resampling=Resampling.bilinear,
          src_nodata=None) -> np.ndarray:
    with rasterio.open(path) as ds:
        src = ds.read(1).astype("float32")
        dst = np.full(grid_shape, np.nan, dtype="float32")
        reproject(src, dst, src_transform=ds.transform, src_crs=ds.crs, src_nodata=src_nodata,
                  dst_transform=transform, dst_crs=CRS_UTM, dst_nodata=np.nan,
                  resampling=resampling)
    return dst


def test_band_folder_equals_reproject_of_each_band_and_dem(products, client):
    store = products["dir"] / "bands.zarr"
    res = tile_scene(products["dir"] / "bands", store, dem=products["dem"], client=client,
                     progress=False)
    assert res.blocks_written == 4
    ds = open_tiles(store)
    assert ds.attrs["source"]["kind"] == "bands"
    image, valid = ds.image.values, ds.valid.values.astype(bool)
    h, w = 1090, 1061
    transform = rasterio.Affine(*ds.attrs["transform"])
    with rasterio.open(products["bands"]["B2"]) as b2:
        assert transform == b2.transform and ds.image.rio.crs == b2.crs
    shape = image.shape[1:]
    for i, band in enumerate(SPECTRAL):
        dn = _warp(products["bands"][band], shape, transform, src_nodata=0)
        expected = dn / 10000
        m = valid & np.isfinite(expected)
        np.testing.assert_allclose(image[i][m], expected[m], atol=1e-6, err_msg=band)
    # Geolocation: the ramps come back where they were (interior, away from nodata rows).
    with rasterio.open(products["big"]) as src:
        truth = src.read()
    inner = (slice(70, h - 70), slice(70, w - 70))
    for i in range(12):
        np.testing.assert_allclose(image[i][inner], truth[i][inner], atol=2e-4,
                                   err_msg=SPECTRAL[i])
    # DEM: bilinear onto the grid; slope: Horn on that DEM, seamless across the 4 blocks.
    # From EPSG:4326 GDAL approximates the transform piecewise (per window), so the tiler's
    # per-block warp (0.01 px tolerance) and a whole-scene reproject (0.125 px) differ by a
    # few decimetres at most; same-CRS bands above are compared exactly.
    dem = _warp(products["dem"], (h, w), transform, src_nodata=-32768)
    m = valid[:h, :w]
    np.testing.assert_allclose(image[13, :h, :w][m], dem[m], atol=0.5)
    assert np.abs(image[13, :h, :w][m] - dem[m]).mean() < 0.1
    slope = horn_slope(dem, 10.0, 10.0)
    np.testing.assert_allclose(image[12, :h, :w][m], slope[m], atol=1.0)
    assert np.abs(image[12, :h, :w][m] - slope[m]).mean() < 0.05
    # Seamless: slope across the block boundary equals Horn on the store's own DEM.
    own = horn_slope(image[13, :h, :w], 10.0, 10.0)
    np.testing.assert_allclose(image[12, 1000:1048, :w], own[1000:1048], atol=1e-3)
    np.testing.assert_allclose(image[12, 6:h, 1000:1048], own[6:h, 1000:1048], atol=1e-3)
    assert not valid[:5].any() and valid[5:h, :w].all()
    assert not valid[h:].any() and not valid[:, w:].any()


def test_dem_in_4326_lands_in_the_right_place(tmp_path, client):
    scene = ramp_scene(tmp_path / "scene.tif", 400, 380)
    folder = tmp_path / "bands"
    write_band_files(scene, folder)
    # Flat DEM in EPSG:4326 (~30 m) with a one-pixel peak under scene pixel (row 210, col 150).
    row, col = 210, 150
    px, py = X0 + (col + 0.5) * 10, Y0 - (row + 0.5) * 10
    lons, lats = warp_transform(CRS_UTM, "EPSG:4326", [px], [py])
    res = 0.00027
    left, top = lons[0] - 200 * res, lats[0] + 200 * res
    dem = np.full((1, 400, 400), 100, dtype="int16")
    dem[0, 200, 200] = 2100
    dem[0, :3] = -32768  # nodata far outside the scene
    dem_path = tmp_path / "dem.tif"
    with rasterio.open(dem_path, "w", driver="GTiff", height=400, width=400, count=1,
                       dtype="int16", crs="EPSG:4326", nodata=-32768,
                       transform=from_origin(left, top, res, res)) as ds:
        ds.write(dem)
    store = tmp_path / "s.zarr"
    tile_scene(folder, store, dem=dem_path, client=client, progress=False)
    demband = open_tiles(store).image.values[13]
    r, c = np.unravel_index(np.argmax(demband), demband.shape)
    assert abs(r - row) <= 2 and abs(c - col) <= 2, (r, c)
    assert demband.max() > 1000 and np.median(demband[:400, :380]) == pytest.approx(100)


@pytest.mark.parametrize("baseline,offset", [("05.10", -1000), ("04.00", -1000),
                                             ("02.14", 0)])
def test_safe_product_reflectance(products, client, caplog, baseline, offset):
    safe = write_safe(products["small"], products["dir"] / f"safe{baseline}", baseline)
    assert re.match(r"S2B_MSIL2A_.*_N\d{4}_.*_T45RUL_.*\.SAFE$", safe.name)
    product = read_safe(safe)
    assert product.level == "L2A" and product.baseline == baseline
    assert product.quantification == 10000 and product.offsets["B2"] == offset
    assert "B10" not in product.files and product.files["B2"].suffix == ".jp2"
    with rasterio.open(product.files["B2"]) as jp2:
        assert jp2.driver == "JP2OpenJPEG" and jp2.dtypes[0] == "uint16"
        dn = jp2.read(1)
    store = products["dir"] / f"safe{baseline}.zarr"
    with caplog.at_level(logging.WARNING):
        tile_scene(safe, store, dem=products["small_dem"], client=client, progress=False)
    assert any("B10" in r.getMessage() for r in caplog.records)
    ds = open_tiles(store)
    assert ds.attrs["source"]["b10_filled"] == B10_FILL_REFLECTANCE
    assert ds.attrs["source"]["baseline"] == baseline
    image = ds.image.values
    np.testing.assert_allclose(image[1, :250, :230], (dn.astype("float32") + offset) / 10000,
                               atol=1e-7)
    with rasterio.open(products["small"]) as src:
        truth = src.read()
    np.testing.assert_allclose(image[1, :250, :230], truth[1], atol=0.6e-4)
    inner = (slice(40, 210), slice(40, 190))
    for i in range(12):
        if SPECTRAL[i] == "B10":
            assert (image[i, :250, :230] == B10_FILL_REFLECTANCE).all()
        else:
            np.testing.assert_allclose(image[i][inner], truth[i][inner], atol=2e-4)


def test_safe_missing_band_is_refused_naming_it(products, tmp_path, capsys):
    safe = write_safe(products["small"], tmp_path, "05.10")
    product = read_safe(safe)
    product.files["B11"].unlink()
    with pytest.raises(InputError, match="B11"):
        resolve_input(safe, products["small_dem"])
    out = tmp_path / "o.zarr"
    rc = tile_job.main([str(safe), "--dem", str(products["small_dem"]), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "B11" in err and len(err.splitlines()) == 1 and not out.exists()


def test_band_folder_ignores_b8a_tci_and_applies_offset_options(products, tmp_path, client):
    folder = tmp_path / "bands"
    shutil.copytree(products["dir"] / "bands", folder)
    (folder / "T45RUL_20240101T050000_TCI_10m.tif").write_bytes(b"")
    (folder / "readme.txt").write_text("x")
    spec = resolve_input(folder, products["dem"], offset=-1000, quantification=5000)
    assert all(s.path.endswith(f"_{t}_{r}m.tif") for s, (t, r) in zip(
        spec.bands[:2], (("B01", 60), ("B02", 10)), strict=True))
    assert not any("B8A" in s.path for s in spec.bands)
    assert spec.bands[1].offset == -1000 and spec.bands[1].quantification == 5000
    assert len(BANDS) == 14


def test_jp2_window_reads_match_whole_reads(products):
    """A windowed read of a lossless JP2 equals the same window of a whole read."""
    safe = write_safe(products["big"], products["dir"] / "safe_big", "05.10")
    path = read_safe(safe).files["B2"]
    with rasterio.open(path) as ds:
        whole = ds.read(1)
        win = ds.read(1, window=rasterio.windows.Window(1000, 1020, 61, 70))
        assert ds.crs == CRS.from_user_input(CRS_UTM)
    np.testing.assert_array_equal(win, whole[1020:1090, 1000:1061])
