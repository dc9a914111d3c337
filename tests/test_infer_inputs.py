"""Inputs as users really have them, at the scene job: every mistake is refused in one line
(exit 2) before any cluster starts, with no finished-looking output and nothing of the user's
deleted; what changes the probabilities keys the predictions kept in the store; scenes in other
CRSs and conventions are mapped right."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from jobs.infer import main
from mapping.lock import exclusive
from mapping.outputs import OUTPUTS
from simulator.l4s_release import L4S_RELEASE_SCALE
from simulator.scene import write_scene
from tests.data.model.data import make_bundle
from tiler.bands import L4S_RELEASE_CONVENTION


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene")
    write_scene(out, height=300, width=420, seed=5, workers=1)
    return out / "scene.tif"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("model") / "m", n=16, epochs=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cluster") / "cluster.yaml"
    path.write_text("local:\n  n_workers: 1\n  threads_per_worker: 2\n"
                    "  dashboard_address: null\n")
    return str(path)


def refused(capsys, argv: list[str], *expected: str) -> str:
    """Run jobs.infer; it must exit 2 with one line holding every ``expected``."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.count("\n") == 0 and err.startswith("python -m jobs.infer: error: "), err
    for text in expected:
        assert text in err, (text, err)
    return err


def probabilities(out: Path) -> np.ndarray:
    with rasterio.open(out / "probability.tif") as ds:
        return ds.read(1)


# -- 5. the job never deletes the user's files -------------------------------------------------

def test_an_input_named_like_an_output_is_refused_and_kept(scene, model, tmp_path, capsys):
    folder = tmp_path / "work"
    folder.mkdir()
    mine = folder / "mask.tif"
    shutil.copy(scene, mine)
    before = mine.read_bytes()
    refused(capsys, [str(mine), "--model", str(model), "--out", str(folder)],
            "mask.tif", "choose another --out")
    assert mine.read_bytes() == before


def test_a_user_file_with_an_output_name_is_never_replaced(scene, model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "preview.png").write_text("my own picture")
    refused(capsys, [str(scene), "--model", str(model), "--out", str(out)],
            "preview.png: exists and was not written by this job")
    assert (out / "preview.png").read_text() == "my own picture"
    assert not (out / "report.json").exists() and not (out / "tiles.zarr").exists()


# -- 8. unchecked numbers ----------------------------------------------------------------------

@pytest.mark.parametrize("option,value", [("--threshold", "1.5"), ("--threshold", "nan"),
                                          ("--threshold", "-1"), ("--min-area", "-5"),
                                          ("--min-area", "inf"), ("--quantification", "0"),
                                          ("--offset", "nan")])
def test_numbers_out_of_range_are_refused_in_one_line(scene, model, tmp_path, capsys, option,
                                                       value):
    refused(capsys, [str(scene), "--model", str(model), "--out", str(tmp_path / "o"),
                     f"{option}={value}"], option)
    assert not (tmp_path / "o").exists()


# -- 10. a broken model is found before anything is tiled --------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_broken_model_is_refused_before_tiling(scene, model, tmp_path, capsys, damage):
    bad = tmp_path / "m"
    shutil.copytree(model, bad)
    keras_file = bad / "model.keras"
    if damage == "truncated":
        keras_file.write_bytes(keras_file.read_bytes()[:2000])
        expected = "model.keras: not a Keras model file"
    else:  # another model's file under this bundle.json
        make_bundle(tmp_path / "other", n=8, epochs=1, seed=9)
        shutil.copy(tmp_path / "other" / "model.keras", keras_file)
        expected = "does not match bundle.json"
    out = tmp_path / "out"
    refused(capsys, [str(scene), "--model", str(bad), "--out", str(out)], expected)
    assert not (out / "tiles.zarr").exists()


# -- 11. one-liners for the output folder, the lock, the bundle --------------------------------

def test_out_that_is_a_file_is_one_line(scene, model, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    refused(capsys, [str(scene), "--model", str(model), "--out", str(tmp_path / "f")],
            "exists and is not a folder")


def test_second_job_on_one_out_is_refused(scene, model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with exclusive(out / ".lock", out):
        refused(capsys, [str(scene), "--model", str(model), "--out", str(out)],
                "another job is writing here")
    assert not (out / "tiles.zarr").exists()


def test_harmonize_without_training_percentiles(scene, model, tmp_path, capsys):
    bare = tmp_path / "m"
    shutil.copytree(model, bare)
    info = json.loads((bare / "bundle.json").read_text())
    info["percentiles"] = {}
    (bare / "bundle.json").write_text(json.dumps(info))
    refused(capsys, [str(scene), "--model", str(bare), "--out", str(tmp_path / "o"),
                     "--harmonize"], "has no training percentiles")


def test_convention_mismatch_names_both_remedies(scene, model, tmp_path, capsys):
    other = tmp_path / "m"
    shutil.copytree(model, other)
    info = json.loads((other / "bundle.json").read_text())
    info["convention"] = L4S_RELEASE_CONVENTION
    (other / "bundle.json").write_text(json.dumps(info))
    refused(capsys, [str(scene), "--model", str(other), "--out", str(tmp_path / "o")],
            "--convention l4s-release", "--harmonize")


def test_digital_numbers_are_refused_naming_the_option(scene, model, tmp_path, capsys):
    with rasterio.open(scene) as src:
        profile, data = src.profile, src.read()
    data[:12] *= 10_000
    dn = tmp_path / "dn.tif"
    with rasterio.open(dn, "w", **profile) as dst:
        dst.write(data)
    refused(capsys, [str(dn), "--model", str(model), "--out", str(tmp_path / "o")],
            "--quantification 10000")


# -- 6., 1., 3. and --overwrite: runs that must map right ---------------------------------------

def test_rerun_with_harmonize_recomputes_and_records_it(scene, model, cluster, tmp_path):
    out = tmp_path / "out"
    base = [str(scene), "--model", str(model), "--out", str(out), "--cluster", cluster]
    assert main(base) == 0
    first = json.loads((out / "report.json").read_text())
    assert first["harmonization"] is None
    assert main([*base, "--harmonize"]) == 0
    second = json.loads((out / "report.json").read_text())
    assert second["blocks"]["computed"] == second["blocks"]["total"]  # not the cached blocks
    assert len(second["harmonization"]["scale"]) == 14
    assert len(second["harmonization"]["offset"]) == 14
    # slope and DEM are physical quantities: never percentile-matched (issue 19, item 4)
    assert second["harmonization"]["scale"][12:] == [1.0, 1.0]
    assert second["harmonization"]["offset"][12:] == [0.0, 0.0]
    assert set(OUTPUTS) <= {p.name for p in out.iterdir()}


def geographic_copy(scene: Path, dst: Path) -> Path:
    with rasterio.open(scene) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                              *src.bounds)
        profile = {**src.profile, "crs": "EPSG:4326", "transform": t, "width": w, "height": h}
        with rasterio.open(dst, "w", **profile) as out:
            for b in range(1, src.count + 1):
                reproject(rasterio.band(src, b), rasterio.band(out, b),
                          resampling=Resampling.bilinear, dst_nodata=np.nan)
    return dst


def test_geographic_scene_is_mapped_on_utm_with_areas_in_m2(scene, model, cluster, tmp_path,
                                                           capsys):
    geo = geographic_copy(scene, tmp_path / "geo.tif")
    out = tmp_path / "out"
    assert main([str(scene), "--model", str(model), "--out", str(out), "--cluster",
                 cluster]) == 0
    with rasterio.open(scene) as src:
        utm = src.crs.to_epsg()
        area = src.width * src.height * 100.0
    # out/tiles.zarr holds another input: the job's own working store, made again (the
    # provenance of the tiles differs), no --overwrite needed
    assert main([str(geo), "--model", str(model), "--out", str(out), "--cluster", cluster]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["grid"]["crs"] == f"EPSG:{utm}" and report["grid"]["res_m"] == 10.0
    assert report["grid"]["resampled_from"]["crs"] == "EPSG:4326"
    assert report["scene_area_m2"] == pytest.approx(area, rel=0.1)  # m2, not square degrees
    with rasterio.open(out / "mask.tif") as ds:
        assert ds.crs.to_epsg() == utm and ds.res == (10.0, 10.0)


def test_stack_in_release_units_maps_like_reflectance(scene, model, cluster, tmp_path):
    """The same scene as an l4s-release stack, with the same model expressed in release
    units (normalisation scaled by the declared per-band scale), gives the same map."""
    write_scene(tmp_path / "rel", height=300, width=420, seed=5, workers=1,
                convention=L4S_RELEASE_CONVENTION)
    rel_model = tmp_path / "rel-model"
    shutil.copytree(model, rel_model)
    info = json.loads((rel_model / "bundle.json").read_text())
    scale = np.asarray(L4S_RELEASE_SCALE)
    info["convention"] = L4S_RELEASE_CONVENTION
    info["normalization"]["mean"] = (np.asarray(info["normalization"]["mean"]) / scale).tolist()
    info["normalization"]["std"] = (np.asarray(info["normalization"]["std"]) / scale).tolist()
    (rel_model / "bundle.json").write_text(json.dumps(info))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([str(scene), "--model", str(model), "--out", str(a), "--cluster", cluster]) == 0
    assert main([str(tmp_path / "rel" / "scene.tif"), "--model", str(rel_model), "--out",
                 str(b), "--cluster", cluster]) == 0
    report = json.loads((b / "report.json").read_text())
    assert report["convention"] == L4S_RELEASE_CONVENTION
    pa, pb = probabilities(a), probabilities(b)
    assert np.array_equal(np.isnan(pa), np.isnan(pb))
    np.testing.assert_allclose(pa, pb, atol=1e-4, equal_nan=True)
