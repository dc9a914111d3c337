"""One identity for every output (issue 19): a re-run into the same --out publishes outputs made
from exactly what it was given, reuses the store only when nothing that changes an output
changed, never writes into its inputs, and leaves the last good map in place when it fails.

Every run goes to one kept cluster (an existing scheduler and one worker process): the model
cache of that worker is exactly what a changed bundle.json must not fool."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from PIL import Image

from common import provenance
from jobs.infer import main
from products.rasters import PROVENANCE_TAG
from simulator.scene import write_scene
from tests.clusters import running_cluster

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene")
    write_scene(out, height=300, width=280, seed=5, workers=1)
    return out


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> Path:
    """cluster.yaml of a running scheduler with one worker process (kept across jobs)."""
    work = tmp_path_factory.mktemp("kept")
    with running_cluster(work, ENV, REPO, workers=1, threads=2) as config:
        yield config


def infer(scene: Path, model: Path, cluster: Path, out: Path, *extra: str,
          inputs: tuple[str, ...] | None = None) -> int:
    return main([*(inputs or (str(scene / "scene.tif"),)), "--model", str(model),
                 "--cluster", str(cluster), "--out", str(out), "--min-area", "0",
                 "--threshold", "0.3", *extra])


def products(out: Path) -> str:
    return json.loads((out / "report.json").read_text())["provenance"]["products"]["digest"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path: its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def first(scene, small_model, kept, tmp_path_factory) -> Path:
    """The first run: what every two-run test changes one thing of."""
    out = tmp_path_factory.mktemp("first") / "out"
    assert infer(scene, small_model, kept, out) == 0
    return out


def rerun_into_copy(first: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(first, out)
    return out


def test_every_published_file_records_the_identity_of_the_report(first):
    digest = products(first)
    report = json.loads((first / "report.json").read_text())
    assert provenance.from_dict(report["provenance"]["products"]).digest == digest
    for name in ("probability.tif", "mask.tif"):
        with rasterio.open(first / name) as src:
            assert src.tags()[PROVENANCE_TAG] == digest
    assert pyogrio.read_info(first / "landslides.gpkg")["layer_metadata"]["provenance"] == digest
    assert Image.open(first / "preview.png").text[PROVENANCE_TAG] == digest
    assert json.loads((first / ".outputs.json").read_text())["provenance"] == digest


def test_a_setting_that_changes_nothing_reuses_the_store(first, scene, small_model,
                                                         one_worker_cluster, tmp_path):
    out = rerun_into_copy(first, tmp_path)
    assert infer(scene, small_model, one_worker_cluster, out) == 0  # another cluster
    report = json.loads((out / "report.json").read_text())
    assert report["blocks"]["tiled"] == 0 and report["blocks"]["computed"] == 0
    assert products(out) == products(first)
    np.testing.assert_array_equal(read(out / "mask.tif"), read(first / "mask.tif"))


CHANGES = {
    "threshold": ["--threshold", "0.6"],
    "tta": ["--tta"],
    "halo": ["--halo", "16"],
    "offset": ["--offset", "0.01"],
    "figure": ["--figure"],
    "vector-format": ["--vector-format", "geojson"],
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_an_option_that_changes_an_output_changes_its_identity(name, first, scene, small_model,
                                                               kept, tmp_path):
    out = rerun_into_copy(first, tmp_path)
    assert infer(scene, small_model, kept, out, *CHANGES[name]) == 0
    digest = products(out)
    assert digest != products(first)
    with rasterio.open(out / "mask.tif") as src:
        assert src.tags()[PROVENANCE_TAG] == digest
    report = json.loads((out / "report.json").read_text())
    if name == "vector-format":
        geojson = json.loads((out / "landslides.geojson").read_text())
        assert geojson["metadata"]["provenance"] == digest
    predicted_again = name in ("tta", "halo", "offset")
    assert (report["blocks"]["computed"] > 0) == predicted_again
    assert (report["provenance"]["predictions"]["digest"]
            != json.loads((first / "report.json").read_text())["provenance"]["predictions"]
            ["digest"]) == predicted_again


def test_a_mask_changes_the_tiles_and_the_map(first, scene, small_model, kept, tmp_path):
    with rasterio.open(scene / "scene.tif") as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
                   "dtype": "uint8", "crs": src.crs, "transform": src.transform}
    scl = np.full((profile["height"], profile["width"]), 4, np.uint8)
    scl[50:150, 60:200] = 9
    with rasterio.open(tmp_path / "scl.tif", "w", **profile) as dst:
        dst.write(scl, 1)
    out = rerun_into_copy(first, tmp_path)
    assert infer(scene, small_model, kept, out, "--mask", str(tmp_path / "scl.tif")) == 0
    assert products(out) != products(first)
    assert np.all(read(out / "mask.tif")[scl == 9] == 255)
    # the same mask with other values to exclude: other tiles again
    again = products(out)
    assert infer(scene, small_model, kept, out, "--mask", str(tmp_path / "scl.tif"),
                 "--mask-values", "3") == 0
    assert products(out) != again
    assert not np.any(read(out / "mask.tif")[scl == 9] == 255)


def test_an_input_replaced_in_place_is_tiled_again(first, scene, small_model, kept, tmp_path):
    copy = tmp_path / "scene"
    shutil.copytree(scene, copy)
    out = tmp_path / "out"
    assert infer(copy, small_model, kept, out) == 0
    before = products(out)
    with rasterio.open(copy / "scene.tif", "r+") as dst:
        band = dst.read(4)
        band[100:200, 100:200] += 0.2  # a bright patch in red: other probabilities there
        dst.write(band, 4)
    assert infer(copy, small_model, kept, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert products(out) != before
    assert report["blocks"]["tiled"] == report["blocks"]["total"] > 0


def test_an_edited_bundle_json_is_a_new_model_on_a_kept_cluster(first, scene, small_model,
                                                                kept, one_worker_cluster,
                                                                tmp_path):
    """The kept worker has the model cached from the first jobs; bundle.json's normalisation
    is edited (model.keras, and so model_id, unchanged): the next job predicts with the new
    normalisation, exactly as a fresh cluster does."""
    model = tmp_path / "model"
    shutil.copytree(small_model, model)
    out = tmp_path / "out"
    assert infer(scene, model, kept, out) == 0
    old = read(out / "probability.tif")
    bundle = json.loads((model / "bundle.json").read_text())
    bundle["normalization"]["mean"] = [m + 0.5 for m in bundle["normalization"]["mean"]]
    (model / "bundle.json").write_text(json.dumps(bundle))
    assert infer(scene, model, kept, out) == 0
    new = read(out / "probability.tif")
    assert np.nanmax(np.abs(new - old)) > 1e-3
    fresh = tmp_path / "fresh"
    assert infer(scene, model, one_worker_cluster, fresh) == 0
    np.testing.assert_allclose(new, read(fresh / "probability.tif"), atol=1e-6,
                               equal_nan=True)
    assert products(out) == products(fresh)


def test_a_store_given_as_input_is_left_byte_identical(first, small_model, kept, tmp_path):
    store = tmp_path / "tiles.zarr"
    shutil.copytree(first / "tiles.zarr", store)
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    assert infer(Path("unused"), small_model, kept, out, inputs=(str(store),)) == 0
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("out/")} == before
    np.testing.assert_array_equal(read(out / "mask.tif"), read(first / "mask.tif"))


def test_a_failed_rerun_leaves_the_previous_outputs_byte_identical(first, scene, small_model,
                                                                  kept, tmp_path, monkeypatch):
    """The re-run (another threshold) fails at the last moment, while writing its files: the
    previous map, its report and its claim are untouched."""
    import mapping.scene

    out = rerun_into_copy(first, tmp_path)
    before = {k: v for k, v in snapshot(out).items() if not k.startswith(("tiles.zarr",
                                                                          "predictions.zarr"))}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mapping.scene, "write_outputs", fail)
    with pytest.raises(OSError, match="disk full"):
        infer(scene, small_model, kept, out, "--threshold", "0.6")
    after = {k: v for k, v in snapshot(out).items() if k in before}
    assert after == before


def test_pre_on_a_stack_that_is_not_reflectance_is_refused_before_any_work(small_model, kept,
                                                                           tmp_path, capsys):
    """NDVI only from reflectance: --pre on a stack in the release's units is one line, exit
    2, and nothing written into --out."""
    from tiler.bands import L4S_RELEASE_CONVENTION

    write_scene(tmp_path / "rel", height=200, width=200, seed=5, workers=1,
                convention=L4S_RELEASE_CONVENTION)
    stack = str(tmp_path / "rel" / "scene.tif")
    out = tmp_path / "out"
    capsys.readouterr()
    assert infer(tmp_path, small_model, kept, out, "--harmonize", "--pre", stack,
                 inputs=(stack,)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and stack in err and "NDVI" in err
    assert not (out / "tiles.zarr").exists() and not (out / "report.json").exists()


def test_the_tiles_identity_covers_the_dem_the_conversion_and_the_convention(scene, tmp_path):
    """What jobs.infer keys the tile store on: another DEM (or the same DEM edited in place),
    another --quantification or --offset, another --convention give another identity, and
    the refusal of a store says which."""
    from simulator.products import write_band_files, write_dem
    from tiler.sources import resolve_input

    bands, dem = tmp_path / "bands", tmp_path / "dem.tif"
    write_band_files(scene / "scene.tif", bands)
    write_dem(scene / "scene.tif", dem)
    base = resolve_input(bands, dem).identity()
    assert resolve_input(bands, dem).identity().digest == base.digest  # stable
    other = {"quantification": resolve_input(bands, dem, quantification=5000).identity(),
             "offset": resolve_input(bands, dem, offset=-1000).identity()}
    stack = str(scene / "scene.tif")
    other["convention"] = resolve_input(stack, convention="l4s-release").identity()
    assert resolve_input(stack).identity().digest != other["convention"].digest
    with rasterio.open(dem, "r+") as dst:
        dst.write(dst.read(1) + 50, 1)  # the DEM edited in place
    other["dem"] = resolve_input(bands, dem).identity()
    for name, identity in other.items():
        assert identity.digest != base.digest, name
    changed = provenance.differences(base.record, other["dem"].record)
    assert changed == [f"{dem.resolve()}: modified since (size or time changed)"]


def test_an_identity_matches_only_itself_under_this_scheme():
    identity = provenance.make("tiles", {"files": [{"path": "/a.tif", "size": 1}], "t": (1, 2)})
    stored = identity.as_dict()
    assert provenance.matches(json.loads(json.dumps(stored)), identity)  # as read back
    assert not provenance.matches({**stored, "version": provenance.VERSION + 1}, identity)
    assert not provenance.matches({**stored, "digest": "0" * 16}, identity)  # tampered
    assert not provenance.matches(None, identity)
    other = provenance.make("tiles", {"files": [{"path": "/a.tif", "size": 2}], "t": (1, 2)})
    assert other.digest != identity.digest
    assert provenance.differences(identity.record, other.record) == ["files[0].size: 1 -> 2"]
