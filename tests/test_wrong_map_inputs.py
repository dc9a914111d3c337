"""Issue 20, finished-looking wrong maps: inputs that the tiler took as they were and that gave
a complete map of the wrong thing. Each case makes its own files (``jobs.synth``'s simulator
and rasterio) and is checked where the tiler resolves its input (``tiler.sources``) and reads
a block (``tiler.blocks``): no cluster, no model.

1. A no-data fill of 0 that the file does not declare (a zero-filled swath edge; an all-zero
   stack; uint16 digital numbers), and the declared no-data value of integer band files.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from common.errors import InputError
from jobs import tile as tile_job
from simulator.products import write_band_files, write_dem
from simulator.scene import write_scene
from tiler.bands import SPECTRAL
from tiler.blocks import read_block
from tiler.sources import ALL_ZERO_IS_NODATA, resolve_input

H, W, EDGE = 200, 400, 150


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A small synthetic scene: scene.tif (float32 reflectance, NaN swath edge), band files and
    a DEM."""
    out = tmp_path_factory.mktemp("scene")
    write_scene(out, height=H, width=W, seed=3, workers=1)
    write_band_files(out / "scene.tif", out / "bands")
    write_dem(out / "scene.tif", out / "dem.tif")
    return out


def _copy(src: Path, dst: Path, data: np.ndarray, **profile) -> Path:
    """``src``'s georeferencing with ``data`` (bands first) and ``profile``'s changes."""
    with rasterio.open(src) as ds:
        meta = ds.profile
    meta.update(count=data.shape[0], dtype=data.dtype, **profile)
    with rasterio.open(dst, "w", **meta) as out:
        out.write(data)
    return dst


def _stack(scene: Path) -> np.ndarray:
    with rasterio.open(scene / "scene.tif") as ds:
        return ds.read()


def _zero_edge(data: np.ndarray) -> np.ndarray:
    """The last EDGE columns 0 in every spectral band (slope and DEM kept): how a swath edge
    looks when the exporter fills no data with 0 and declares nothing."""
    data = data.copy()
    data[:len(SPECTRAL), :, -EDGE:] = 0
    return data


def _valid(spec) -> np.ndarray:
    _, valid = read_block(spec, 0, 0)
    return valid[:H, :W]


def _data(scene: Path) -> np.ndarray:
    """Pixels of the scene that hold data (the simulator's NaN swath edge excluded)."""
    return np.isfinite(_stack(scene)).all(axis=0)


# -- 1. no data that is 0 but not declared ------------------------------------------------------

def test_a_zero_filled_edge_of_a_float_stack_is_nodata_and_said(scene, tmp_path):
    stack = _copy(scene / "scene.tif", tmp_path / "zeros.tif", _zero_edge(_stack(scene)),
                  nodata=None)
    spec = resolve_input(stack)
    valid = _valid(spec)
    assert not valid[:, -EDGE:].any()
    np.testing.assert_array_equal(valid[:, :-EDGE], _data(scene)[:, :-EDGE])
    note = spec.mask_note
    assert note is not None and "\n" not in note
    assert note.startswith(f"{stack}: ") and "0 in every spectral band" in note
    assert "they are nodata" in note
    assert spec.source_record()["mask"]["note"] == note
    assert spec.identity().record["nodata_rule"] == ALL_ZERO_IS_NODATA  # old stores: remade


def test_a_zero_filled_edge_of_a_uint16_stack_of_digital_numbers(scene, tmp_path):
    data = _zero_edge(_stack(scene))
    dn = np.where(np.isfinite(data), np.round(data * 10000), 0)
    dn[len(SPECTRAL):] = np.where(np.isfinite(data[len(SPECTRAL):]),
                                  np.round(data[len(SPECTRAL):]), 0)
    stack = _copy(scene / "scene.tif", tmp_path / "dn.tif",
                  np.clip(dn, 0, 65535).astype("uint16"), nodata=None)
    spec = resolve_input(stack, quantification=10000)
    assert all(b.nodata == 0 for b in spec.bands)  # digital numbers: 0 is nodata, as in bands
    assert spec.dem.nodata is None and spec.slope.nodata is None  # 0 m is a height
    valid = _valid(spec)
    assert not valid[:, -EDGE:].any() and valid[:, :-EDGE].any()
    assert f"{stack}: " in spec.mask_note and "0 in every spectral band" in spec.mask_note


def _float_bands(scene: Path, folder: Path, zero_edge: bool) -> Path:
    """The band files as float32 reflectance without a declared nodata (NaN where the
    simulator wrote DN 0), the last EDGE 10 m columns 0 when ``zero_edge``."""
    folder.mkdir()
    for f in (scene / "bands").glob("*.tif"):
        with rasterio.open(f) as ds:
            dn, factor = ds.read(1), round(ds.res[0] / 10)
        refl = np.where(dn == 0, np.nan, dn / 10000).astype("float32")
        if zero_edge:  # every pixel that reaches into the edge
            refl[:, (W - EDGE) // factor:] = 0
        _copy(f, folder / f.name, refl[None], nodata=None)
    return folder


def test_a_zero_filled_edge_of_float_band_files(scene, tmp_path):
    spec = resolve_input(_float_bands(scene, tmp_path / "zeros", True), scene / "dem.tif")
    plain = resolve_input(_float_bands(scene, tmp_path / "plain", False), scene / "dem.tif")
    valid = _valid(spec)
    # the last 20 m pixel before the edge is blended into the edge's first 10 m column
    assert not valid[:, -EDGE + 1:].any()
    np.testing.assert_array_equal(valid[:, :-EDGE], _valid(plain)[:, :-EDGE])
    assert "0 in every spectral band" in spec.mask_note and plain.mask_note is None


def test_a_zero_in_some_bands_only_is_a_value_of_a_float_stack(scene, tmp_path):
    data = _stack(scene)
    data[:3, :, -EDGE:] = 0  # B1..B3 exactly 0: dark, but a surface
    stack = _copy(scene / "scene.tif", tmp_path / "dark.tif", data, nodata=None)
    spec = resolve_input(stack)
    np.testing.assert_array_equal(_valid(spec), _data(scene))
    assert spec.mask_note is None


def test_an_all_zero_stack_is_refused_naming_it(scene, tmp_path, capsys):
    data = _stack(scene)
    data[:len(SPECTRAL)] = np.where(np.isnan(data[:len(SPECTRAL)]), np.nan, 0)
    stack = _copy(scene / "scene.tif", tmp_path / "zero.tif", data)
    with pytest.raises(InputError) as err:
        resolve_input(stack)
    assert str(err.value) == (f"{stack}: the scene is empty (every pixel is nodata or 0 in "
                              f"every spectral band)")
    out = tmp_path / "s.zarr"
    assert tile_job.main([str(stack), "--out", str(out), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"python -m jobs.tile: error: {err.value}"]
    assert not out.exists()


def test_a_stack_of_zeros_with_stray_pixels_is_refused(scene, tmp_path):
    data = np.zeros((14, H, W), "float32")
    data[:, 7, 11] = data[:, 150, 380] = 0.2
    stack = _copy(scene / "scene.tif", tmp_path / "stray.tif", data, nodata=None)
    with pytest.raises(InputError, match=rf"^{stack}: the scene is nearly empty: 0\.0\d% of the "
                                         rf"sampled pixels hold data, the others are nodata or "
                                         rf"0 in every spectral band$"):
        resolve_input(stack)


def test_integer_band_files_keep_their_declared_nodata(scene, tmp_path):
    folder = tmp_path / "bands"
    shutil.copytree(scene / "bands", folder)
    for f in folder.glob("*.tif"):
        with rasterio.open(f, "r+") as ds:
            dn = ds.read(1)
            ds.write(np.where(dn == 0, 65535, dn).astype("uint16"), 1)
            ds.nodata = 65535
    spec = resolve_input(folder, scene / "dem.tif")
    assert {b.nodata for b in spec.bands if not isinstance(b, float)} == {65535}
    plain = resolve_input(scene / "bands", scene / "dem.tif")
    np.testing.assert_array_equal(_valid(spec), _valid(plain))
    assert _valid(spec).sum() > 0
    assert spec.identity().digest != plain.identity().digest


def test_normal_inputs_give_no_note(scene):
    assert resolve_input(scene / "scene.tif").mask_note is None
    assert resolve_input(scene / "bands", scene / "dem.tif").mask_note is None


# -- 2. a band of a folder not on the product's grid ------------------------------------------

def _shifted(scene: Path, folder: Path, band: str, dx: float, dy: float = 0.0) -> Path:
    """The scene's band files with ``band``'s georeference moved ``dx`` m east, ``dy`` north."""
    shutil.copytree(scene / "bands", folder)
    name = next(f for f in folder.glob("*.tif") if f"_B{int(band[1:]):02d}_" in f.name)
    with rasterio.open(name, "r+") as ds:
        ds.transform = Affine.translation(dx, dy) * ds.transform
    return name


@pytest.mark.parametrize("band, dx, dy", [("B3", 40.0, 0.0), ("B11", 40.0, 0.0),
                                          ("B9", 40.0, 0.0), ("B5", 0.0, -25.0),
                                          ("B8", 10.0, 0.0)])
def test_a_band_shifted_within_the_footprint_tolerance_is_refused(scene, tmp_path, band, dx,
                                                                   dy):
    path = _shifted(scene, tmp_path / "bands", band, dx, dy)
    with pytest.raises(InputError) as err:
        resolve_input(tmp_path / "bands", scene / "dem.tif")
    assert str(err.value) == (f"{path}: band {band} is misregistered: its origin is {dx:+.1f} m "
                              f"east and {dy:+.1f} m north of B2's (bands of one product are "
                              f"on one grid: their origins agree to 1 m)")


def test_a_band_shifted_by_a_fraction_of_a_metre_is_accepted(scene, tmp_path):
    _shifted(scene, tmp_path / "bands", "B11", 0.4, -0.3)
    spec = resolve_input(tmp_path / "bands", scene / "dem.tif")
    assert spec.grid == resolve_input(scene / "bands", scene / "dem.tif").grid


def test_jobs_tile_refuses_a_shifted_band_in_one_line(scene, tmp_path, capsys):
    path = _shifted(scene, tmp_path / "bands", "B4", -40.0)
    out = tmp_path / "s.zarr"
    assert tile_job.main([str(tmp_path / "bands"), "--dem", str(scene / "dem.tif"), "--out",
                          str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m jobs.tile: error: {path}: band B4 is misregistered: its origin is -40.0 m "
        f"east and +0.0 m north of B2's (bands of one product are on one grid: their origins "
        f"agree to 1 m)"]
    assert not out.exists()


# -- 3. a DEM in feet ---------------------------------------------------------------------------

def _dem_in_feet(scene: Path, path: Path, foot: float = 0.3048, lift: float = 0.0, *,
                 unit: str | None = None, tags: dict | None = None) -> Path:
    """The scene's DEM (+ ``lift`` m) in feet (float32), its unit type ``unit``, ``tags``."""
    with rasterio.open(scene / "dem.tif") as ds:
        m = ds.read(1).astype("float64")
        nodata = ds.nodata
    ft = np.where(m == nodata, -32768, (m + lift) / foot).astype("float32")
    _copy(scene / "dem.tif", path, ft[None], nodata=-32768)
    with rasterio.open(path, "r+") as ds:
        if unit is not None:
            ds.units = (unit,)
        if tags:
            ds.update_tags(**tags)
    return path


def _dem_and_slope(spec) -> tuple[np.ndarray, np.ndarray]:
    image, valid = read_block(spec, 0, 0)
    ok = valid[:H, :W].astype(bool)
    return image[13, :H, :W][ok], image[12, :H, :W][ok]


@pytest.mark.parametrize("unit, tags, foot, said", [
    ("ft", None, 0.3048, "ft (its band unit type)"),
    (None, {"UNITS": "ft"}, 0.3048, "ft (its UNITS=ft tag)"),
    ("US survey foot", None, 1200 / 3937, "US survey foot (its band unit type)"),
])
def test_a_dem_in_feet_that_says_so_is_converted_to_metres(scene, tmp_path, unit, tags, foot,
                                                           said):
    dem = _dem_in_feet(scene, tmp_path / "dem_ft.tif", foot, unit=unit, tags=tags)
    spec = resolve_input(scene / "bands", dem)
    metres = resolve_input(scene / "bands", scene / "dem.tif")
    assert spec.dem.unit_scale == pytest.approx(foot)
    (z, slope), (z_m, slope_m) = _dem_and_slope(spec), _dem_and_slope(metres)
    np.testing.assert_allclose(z, z_m, atol=0.01)
    np.testing.assert_allclose(slope, slope_m, atol=0.01)  # degrees of the ground, not x3.28
    assert spec.mask_note == f"{dem}: the DEM is in {said}: converted to metres (x {foot:.10g})"
    # the conversion is part of the tiles' identity
    assert spec.identity().record["dem"]["unit_scale"] == pytest.approx(foot)
    unconverted = replace(spec, dem=replace(spec.dem, unit_scale=1.0))
    assert unconverted.identity().digest != spec.identity().digest


def test_a_dem_in_metres_is_as_it_was(scene, tmp_path):
    dem = _dem_in_feet(scene, tmp_path / "dem_m.tif", 1.0, unit="metre")
    spec = resolve_input(scene / "bands", dem)
    assert spec.dem.unit_scale == 1.0 and spec.mask_note is None
    plain = resolve_input(scene / "bands", scene / "dem.tif")
    np.testing.assert_array_equal(_dem_and_slope(spec)[1], _dem_and_slope(plain)[1])


def test_an_undeclared_dem_in_feet_above_everest_is_named(scene, tmp_path, capsys):
    dem = _dem_in_feet(scene, tmp_path / "dem_ft.tif", lift=2500.0)  # a Himalayan scene
    spec = resolve_input(scene / "bands", dem)
    assert spec.dem.unit_scale == 1.0  # not refused, not converted
    note = spec.mask_note
    assert note is not None and "\n" not in note
    assert note.startswith(f"{dem}: the DEM reaches ")
    assert note.endswith(" m over the scene, above any height on Earth (Everest: 8849 m): "
                         "check its unit; its unit is not declared: if it is in feet, declare "
                         "it (gdal_edit -units ft FILE)")
    assert spec.source_record()["mask"]["note"] == note


@pytest.mark.parametrize("unit, tags, problem", [
    ("furlong", None, "the DEM's unit 'furlong' (band unit type) is not metres, feet or US "
                      "survey feet: cannot convert its heights to metres"),
    ("m", {"UNITS": "ft"}, "the DEM's units disagree: 'm' (band unit type), 'ft' (UNITS=ft "
                           "tag)"),
])
def test_a_dem_unit_that_cannot_be_honoured_is_refused(scene, tmp_path, unit, tags, problem):
    dem = _dem_in_feet(scene, tmp_path / "dem.tif", unit=unit, tags=tags)
    with pytest.raises(InputError) as err:
        resolve_input(scene / "bands", dem)
    assert str(err.value) == f"{dem}: {problem}"
