"""The synthetic-data simulator and `python -m jobs.synth`: layout, georeferencing, determinism,
window consistency, physical plausibility, and that the threshold baseline stays weak."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio

from common.owned import MARKER
from simulator.baseline import evaluate_threshold, fit_threshold
from simulator.l4s_release import L4S_RELEASE_SCALE, from_l4s_release, to_l4s_release
from simulator.patches import region_origins, write_patches
from simulator.scene import TRUTH_NODATA, write_scene
from simulator.world import simulate_window
from tiler.bands import BANDS, CONVENTION, CONVENTION_TAG, L4S_RELEASE_CONVENTION

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_VALID = 64, 32
SCENE_H, SCENE_W = 600, 520  # not multiples of 128; 3 x 3 blocks of 256 with ragged edges


@pytest.fixture(scope="session")
def patch_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("patches")
    write_patches(out, n_train=N_TRAIN, n_valid=N_VALID, seed=0, workers=1)
    return out


@pytest.fixture(scope="session")
def scene(tmp_path_factory: pytest.TempPathFactory):
    return write_scene(tmp_path_factory.mktemp("scene"), SCENE_H, SCENE_W, seed=0, workers=1,
                       block=256)


@pytest.fixture(scope="session")
def release_scene(tmp_path_factory: pytest.TempPathFactory):
    """The ``scene`` fixture's scene (same seed, size, blocks) in ``l4s-release`` units."""
    return write_scene(tmp_path_factory.mktemp("release"), SCENE_H, SCENE_W, seed=0, workers=1,
                       block=256, convention=L4S_RELEASE_CONVENTION)


def _read_split(split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    n = len(list((split_dir / "img").glob("image_*.h5")))
    imgs, masks = [], []
    for i in range(1, n + 1):
        with h5py.File(split_dir / "img" / f"image_{i}.h5", "r") as f:
            imgs.append(f["img"][:])
        with h5py.File(split_dir / "mask" / f"mask_{i}.h5", "r") as f:
            masks.append(f["mask"][:])
    return np.stack(imgs), np.stack(masks)


def _mountain_window() -> tuple[int, int]:
    return region_origins(0, "TrainData", 1)[0]


# --- patches -------------------------------------------------------------------------------

def test_patch_layout(patch_set: Path) -> None:
    meta = json.loads((patch_set / "dataset.json").read_text())
    assert meta == {"convention": CONVENTION, "bands": list(BANDS), "seed": 0,
                    "n_train": N_TRAIN, "n_valid": N_VALID}
    for split, n in (("TrainData", N_TRAIN), ("ValidData", N_VALID)):
        imgs = sorted(p.name for p in (patch_set / split / "img").iterdir())
        masks = sorted(p.name for p in (patch_set / split / "mask").iterdir())
        assert imgs == sorted(f"image_{i}.h5" for i in range(1, n + 1))
        assert masks == sorted(f"mask_{i}.h5" for i in range(1, n + 1))
        with h5py.File(patch_set / split / "img" / "image_1.h5", "r") as f:
            assert list(f.keys()) == ["img"]
            assert f["img"].dtype == np.float32 and f["img"].shape == (128, 128, 14)
        with h5py.File(patch_set / split / "mask" / f"mask_{n}.h5", "r") as f:
            assert list(f.keys()) == ["mask"]
            assert f["mask"].dtype == np.uint8 and f["mask"].shape == (128, 128)
    hidden = [p.name for p in patch_set.iterdir() if p.name.startswith(".")]
    assert hidden == [MARKER]  # no leftovers; the claim of jobs.synth (common.owned)


def test_patch_values_follow_the_convention(patch_set: Path) -> None:
    img, mask = _read_split(patch_set / "TrainData")
    refl = img[..., :12]
    assert np.isfinite(img).all()
    assert refl.min() >= 0 and refl.max() <= 1
    assert 0 <= img[..., 12].min() and img[..., 12].max() < 90  # slope, degrees
    assert 100 < img[..., 13].mean() < 4000  # DEM, metres
    assert set(np.unique(mask)) <= {0, 1}
    ndvi = (img[..., 7] - img[..., 3]) / (img[..., 7] + img[..., 3])
    assert np.median(ndvi) > 0.4  # a mostly vegetated world


def test_landslides_lie_on_steep_ground_in_plausible_amounts(patch_set: Path) -> None:
    img, mask = _read_split(patch_set / "TrainData")
    slope = img[..., 12]
    slide = mask == 1
    assert 0.01 < slide.mean() < 0.08
    assert np.median(slope[slide]) > 20
    assert np.median(slope[slide]) > np.median(slope) + 5
    _, vmask = _read_split(patch_set / "ValidData")
    assert vmask.any()


def test_threshold_baseline_stays_weak(patch_set: Path) -> None:
    a, b = fit_threshold(patch_set / "TrainData")
    s = evaluate_threshold(patch_set / "ValidData", a, b)
    assert -1 <= a <= 1 and 0 <= b <= 90
    assert 0.05 < s.f1 < 0.75
    assert 0 <= s.iou <= s.f1 <= 1


def test_patches_are_deterministic(patch_set: Path, tmp_path: Path) -> None:
    write_patches(tmp_path, n_train=16, n_valid=16, seed=0, workers=1)
    a, am = _read_split(patch_set / "ValidData")
    b, bm = _read_split(tmp_path / "ValidData")
    np.testing.assert_array_equal(a[:16], b)
    np.testing.assert_array_equal(am[:16], bm)


def test_train_and_valid_do_not_overlap() -> None:
    from simulator.patches import REGION

    train = region_origins(0, "TrainData", 20)
    valid = region_origins(0, "ValidData", 20)
    for r, c in train:
        for vr, vc in valid:
            assert abs(r - vr) >= REGION or abs(c - vc) >= REGION


# --- the world -----------------------------------------------------------------------------

def test_window_equals_the_same_region_of_a_bigger_window() -> None:
    r0, c0 = _mountain_window()
    big, big_mask = simulate_window(0, r0, c0, 300, 280)
    assert big_mask.any()  # landslides cross the sub-window's edges, not a trivial case
    r, c, h, w = 37, 101, 130, 90
    small, small_mask = simulate_window(0, r0 + r, c0 + c, h, w)
    np.testing.assert_array_equal(small, big[:, r:r + h, c:c + w])
    np.testing.assert_array_equal(small_mask, big_mask[r:r + h, c:c + w])


def test_seed_changes_the_world() -> None:
    r0, c0 = _mountain_window()
    a, am = simulate_window(0, r0, c0, 64, 64)
    b, bm = simulate_window(0, r0, c0, 64, 64)
    c, _ = simulate_window(1, r0, c0, 64, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(am, bm)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (14, 64, 64) and am.dtype == np.uint8


def test_empty_window_is_refused() -> None:
    with pytest.raises(ValueError):
        simulate_window(0, 0, 0, 0, 10)


# --- scenes --------------------------------------------------------------------------------

def test_scene_georeferencing_and_format(scene) -> None:
    with rasterio.open(scene.scene) as src:
        assert (src.height, src.width, src.count) == (SCENE_H, SCENE_W, 14)
        assert src.dtypes == ("float32",) * 14
        assert src.crs.to_epsg() == 32645
        t = src.transform
        assert (t.a, t.e, t.b, t.d) == (10.0, -10.0, 0.0, 0.0)
        assert (t.c, t.f) == (399965.0, 3100020.0)
        assert src.descriptions == BANDS
        assert np.isnan(src.nodata)
        assert src.block_shapes == [(256, 256)] * 14
        assert src.profile["tiled"]
        assert src.compression.name.lower() in ("zstd", "deflate")
        assert src.tags()["convention"] == CONVENTION
        assert src.tags()[CONVENTION_TAG] == CONVENTION
        img = src.read()
    nan = np.isnan(img)
    assert (nan.all(axis=0) == nan.any(axis=0)).all()  # nodata in all 14 bands or none
    nodata = nan[0]
    assert 0.05 <= nodata.mean() <= 0.15
    cols = np.where(nodata.any(axis=0))[0]
    assert cols.min() == 0 or cols.max() == SCENE_W - 1  # along one edge
    assert scene.scene.parent == scene.truth.parent
    assert sorted(p.name for p in scene.scene.parent.iterdir()) == [MARKER, "scene.tif",
                                                                     "truth.tif"]


def test_truth_is_on_the_scene_grid(scene) -> None:
    with rasterio.open(scene.scene) as src, rasterio.open(scene.truth) as tru:
        assert (tru.height, tru.width, tru.count) == (src.height, src.width, 1)
        assert tru.crs == src.crs and tru.transform == src.transform
        assert tru.dtypes == ("uint8",) and tru.nodata == TRUTH_NODATA
        truth = tru.read(1)
        nodata = np.isnan(src.read(1))
    assert ((truth == TRUTH_NODATA) == nodata).all()
    assert set(np.unique(truth)) <= {0, 1, TRUTH_NODATA}
    frac = (truth == 1).sum() / (truth != TRUTH_NODATA).sum()
    assert 0.005 < frac < 0.1
    assert abs(frac - scene.landslide_fraction) < 1e-9


def test_scene_pixels_are_the_world_at_its_origin(scene) -> None:
    r, c, h, w = 250, 200, 40, 70  # straddles block edges at 256
    with rasterio.open(scene.scene) as src:
        got = src.read(window=rasterio.windows.Window(c, r, w, h))
    want, _ = simulate_window(0, scene.world_row0 + r, scene.world_col0 + c, h, w)
    np.testing.assert_array_equal(got, want)


def test_scene_is_deterministic_and_seeded(scene, tmp_path: Path) -> None:
    same = write_scene(tmp_path / "same", SCENE_H, SCENE_W, seed=0, workers=1)  # other block
    other = write_scene(tmp_path / "other", 130, 150, seed=1, workers=1)
    with rasterio.open(scene.scene) as a, rasterio.open(same.scene) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(scene.truth) as a, rasterio.open(same.truth) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(scene.scene) as a, rasterio.open(other.scene) as b:
        assert not np.array_equal(a.read(window=((0, 130), (0, 150))), b.read(),
                                  equal_nan=True)


# --- l4s-release units ----------------------------------------------------------------------

def test_release_scale_is_declared_per_band() -> None:
    assert len(L4S_RELEASE_SCALE) == len(BANDS)
    assert all(isinstance(v, float) and v > 0 for v in L4S_RELEASE_SCALE)
    assert L4S_RELEASE_SCALE[BANDS.index("DEM")] > L4S_RELEASE_SCALE[BANDS.index("slope")] > 1
    assert max(L4S_RELEASE_SCALE[:12]) < 1  # reflectance bands: one unit is under 1


def test_release_conversion_is_exact_both_ways_and_keeps_nan() -> None:
    rng = np.random.default_rng(0)
    refl = rng.uniform(0, 1, (14, 5, 6)).astype(np.float32)
    refl[12] *= 60
    refl[13] *= 3000
    refl[:, 1, 2] = np.nan
    rel = to_l4s_release(refl)
    assert rel.dtype == np.float32 and rel.shape == refl.shape
    for i, scale in enumerate(L4S_RELEASE_SCALE):
        np.testing.assert_allclose(rel[i], refl[i] / scale, rtol=1e-6)
    assert np.isnan(rel[:, 1, 2]).all() and np.isfinite(np.delete(rel.reshape(14, -1), 8, 1)).all()
    np.testing.assert_array_equal(from_l4s_release(rel), refl)  # bit for bit, NaN included
    np.testing.assert_array_equal(to_l4s_release(from_l4s_release(rel)), rel)
    with pytest.raises(ValueError, match="channels-first"):
        to_l4s_release(refl.transpose(1, 2, 0))
    with pytest.raises(ValueError, match="channels-first"):
        from_l4s_release(refl[:13])


def test_release_scene_is_the_reflectance_scene_divided_by_the_scale(scene,
                                                                     release_scene) -> None:
    with rasterio.open(release_scene.scene) as src:
        assert src.tags()[CONVENTION_TAG] == L4S_RELEASE_CONVENTION
        assert src.descriptions == BANDS and src.dtypes == ("float32",) * 14
        rel = src.read()
    with rasterio.open(scene.scene) as src:
        refl = src.read()
    for i, scale in enumerate(L4S_RELEASE_SCALE):
        assert (np.isnan(rel[i]) == np.isnan(refl[i])).all(), BANDS[i]
        np.testing.assert_array_equal(rel[i], refl[i] / np.float32(scale), err_msg=BANDS[i])
    assert np.isnan(rel).any()
    means = np.nanmean(rel, axis=(1, 2))
    assert ((means > 0.4) & (means < 2.5)).all(), means  # like the release: about 1
    with rasterio.open(scene.truth) as a, rasterio.open(release_scene.truth) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_products_do_not_depend_on_the_stack_convention(scene, release_scene,
                                                        tmp_path: Path) -> None:
    from simulator.products import write_band_files, write_dem

    files = {}
    for name, info in (("refl", scene), ("rel", release_scene)):
        files[name] = write_band_files(info.scene, tmp_path / name / "bands")
        files[name]["dem"] = write_dem(info.scene, tmp_path / name / "dem.tif")
    assert files["refl"].keys() == files["rel"].keys()
    for band, path in files["refl"].items():
        with rasterio.open(path) as a, rasterio.open(files["rel"][band]) as b:
            assert a.transform == b.transform
            want = a.read()
            np.testing.assert_array_equal(want, b.read(), err_msg=band)
    assert want.max() > 100  # the DEM in metres, not release units


def test_library_refuses_an_unknown_convention(tmp_path: Path) -> None:
    from common.errors import SimulatorError

    with pytest.raises(SimulatorError, match="convention"):
        write_scene(tmp_path / "s", 10, 10, convention="dn")
    assert not (tmp_path / "s").exists()


# --- the CLI -------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jobs.synth", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_help() -> None:
    for args in ([], ["patches"], ["scene"], ["baseline"]):
        p = _cli(*args, "--help")
        assert p.returncode == 0, p.stderr
        assert "usage" in p.stdout


def _rasters(root: Path) -> dict[str, np.ndarray]:
    """Every raster under ``root`` but scene.tif, by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.suffix in (".tif", ".jp2") and path.name != "scene.tif":
            with rasterio.open(path) as src:
                out[str(path.relative_to(root))] = src.read()
    return out


def test_cli_scene_small(tmp_path: Path) -> None:
    p = _cli("scene", str(tmp_path / "s"), "--height", "130", "--width", "150", "--seed", "3")
    assert p.returncode == 0, p.stderr
    with rasterio.open(tmp_path / "s" / "scene.tif") as src:
        assert (src.height, src.width) == (130, 150)
        assert src.tags()[CONVENTION_TAG] == CONVENTION
        refl = src.read()
    p = _cli("scene", str(tmp_path / "r"), "--height", "130", "--width", "150", "--seed", "3",
             "--convention", L4S_RELEASE_CONVENTION)
    assert p.returncode == 0, p.stderr
    with rasterio.open(tmp_path / "r" / "scene.tif") as src:
        assert src.tags()[CONVENTION_TAG] == L4S_RELEASE_CONVENTION
        np.testing.assert_array_equal(src.read(), to_l4s_release(refl))
    # truth.tif, bands/, dem.tif and the SAFE are the same for both conventions
    want, got = _rasters(tmp_path / "s"), _rasters(tmp_path / "r")
    assert len(want) > 20 and want.keys() == got.keys()
    for key, arr in want.items():
        np.testing.assert_array_equal(arr, got[key], err_msg=key)
    mtd = sorted(p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("MTD_*.xml"))
    assert len(mtd) == 1
    assert (tmp_path / "s" / mtd[0]).read_text() == (tmp_path / "r" / mtd[0]).read_text()


def test_cli_refuses_an_unknown_convention(tmp_path: Path) -> None:
    p = _cli("scene", str(tmp_path / "s"), "--height", "20", "--width", "20",
             "--convention", "dn")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "--convention" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args", [
    ["scene", "{tmp}/x", "--height", "0"],
    ["scene", "{tmp}/file"],
    ["patches", "{tmp}/file", "--n-train", "4"],
    ["patches", "{tmp}/x", "--n-valid", "abc"],
    ["baseline", "{tmp}/nothing"],
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "file").write_text("not a folder")
    p = _cli(*[a.format(tmp=tmp_path) for a in args])
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "error" in p.stderr


def test_library_refuses_bad_arguments(tmp_path: Path) -> None:
    from common.errors import SimulatorError

    (tmp_path / "file").write_text("x")
    with pytest.raises(SimulatorError, match="height"):
        write_scene(tmp_path / "s", 0, 10)
    with pytest.raises(SimulatorError, match="not a directory"):
        write_scene(tmp_path / "file", 10, 10)
    with pytest.raises(SimulatorError, match="seed"):
        write_patches(tmp_path / "p", 4, 4, seed=-1)
    with pytest.raises(SimulatorError, match="n_train"):
        write_patches(tmp_path / "p", 0, 4)
