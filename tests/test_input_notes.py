"""Issue 20, inputs: mask values a mask cannot hold, a mask that masks nothing, --mask given a
folder, a SAFE's metadata file given as the scene, a SAFE with only its 60 m bands, and loops
of symbolic links as input, --dem or --mask. Each refusal is one line naming the file or option
(exit status 2); each degraded-but-accepted input gets a one-line note on stderr, also kept in
the store's ``source.mask.note``. Every case makes its own files (jobs.synth's simulator)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling

from common.errors import InputError
from jobs import infer as infer_job
from jobs import tile as tile_job
from simulator.event import read_event, write_event
from tiler.run import finish_plan, plan_store, tile_block
from tiler.safe import read_safe
from tiler.sources import resolve_input
from tiler.store import open_group

SIZE, OVERLAP = 120, 24


@pytest.fixture(scope="module")
def event(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("event")
    write_event(out, seed=0, height=SIZE, width=SIZE, overlap=OVERLAP)
    return read_event(out)


def _tile_job(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, list[str]]:
    try:
        rc = tile_job.main([*argv, "--no-progress"])
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    return rc, capsys.readouterr().err.strip().splitlines()


def _error(rc: int, lines: list[str], prog: str = "jobs.tile") -> str:
    errors = [line for line in lines if line.startswith(f"python -m {prog}: error: ")]
    assert rc == 2 and len(errors) == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    return errors[0]


def _tiled(spec, store: Path) -> Path:
    """The store tiled in this process (no cluster), so that the job finds it complete."""
    plan = plan_store(spec, store)
    finish_plan(plan, sum(tile_block(r, c, spec, str(store)) for r, c in plan.todo))
    return store


def _byte_mask(stack: str, path: Path, value: int) -> Path:
    """A uint8 mask of one value on the stack's footprint, at 20 m."""
    with rasterio.open(stack) as src:
        t, crs, h, w = src.transform, src.crs, src.height, src.width
    with rasterio.open(path, "w", driver="GTiff", height=h // 2, width=w // 2, count=1,
                       dtype="uint8", crs=crs, transform=t * t.scale(2)) as dst:
        dst.write(np.full((1, h // 2, w // 2), value, dtype="uint8"))
    return path


# --- C: masks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("values, shown", [("300", "300"), ("-1,-5", "-5,-1"),
                                           ("2.5,3", "2.5")])
def test_a_mask_value_the_scl_cannot_hold_is_refused(event, tmp_path, capsys, values, shown):
    g = event["granules"]["A"]["post"]
    rc, lines = _tile_job(capsys, g["product"], "--dem", event["dem"], "--out",
                          str(tmp_path / "s.zarr"), f"--mask-values={values}")
    line = _error(rc, lines)
    assert f"{g['scl']}: --mask-values {shown}: a uint8 mask cannot hold" in line
    assert not (tmp_path / "s.zarr").exists()


def test_a_mask_value_a_mask_file_cannot_hold_is_refused(event, tmp_path, capsys):
    stack = event["granules"]["A"]["post"]["stack"]
    mask = _byte_mask(stack, tmp_path / "mask.tif", 4)
    rc, lines = _tile_job(capsys, stack, "--mask", str(mask), "--mask-values", "3,256",
                          "--out", str(tmp_path / "s.zarr"))
    assert f"{mask}: --mask-values 256: a uint8 mask cannot hold" in _error(rc, lines)


def test_a_mask_that_masks_nothing_says_so(event, tmp_path, capsys):
    stack = event["granules"]["A"]["post"]["stack"]
    mask = _byte_mask(stack, tmp_path / "clear.tif", 4)
    spec = resolve_input(stack, mask=mask, mask_values=[3, 8, 9])
    assert spec.mask_note == (f"{mask}: no pixel of the mask has one of the values 3,8,9 "
                              f"(--mask-values): it masks nothing")
    store = _tiled(spec, tmp_path / "s.zarr")
    assert open_group(store).attrs["source"]["mask"]["note"] == spec.mask_note
    rc, lines = _tile_job(capsys, stack, "--mask", str(mask), "--mask-values", "3,8,9",
                          "--out", str(store))
    notes = [line for line in lines if "note:" in line]
    assert rc == 0 and len(notes) == 1 and "it masks nothing" in notes[0], lines
    # a mask holding one of the values: no note
    assert resolve_input(stack, mask=mask, mask_values=[4]).mask_note is None


def test_a_mask_folder_is_called_a_folder(event, tmp_path, capsys):
    stack = event["granules"]["A"]["post"]["stack"]
    rc, lines = _tile_job(capsys, stack, "--mask", str(tmp_path), "--out",
                          str(tmp_path / "s.zarr"))
    line = _error(rc, lines)
    assert f"{tmp_path}: --mask is a folder, not a raster" in line
    assert "does not exist" not in line


# --- D: SAFE products -------------------------------------------------------------------------

def test_the_metadata_file_given_as_the_scene_names_the_safe_folder(event, tmp_path, capsys):
    product = Path(event["granules"]["A"]["post"]["product"])
    mtd = product / "MTD_MSIL2A.xml"
    rc, lines = _tile_job(capsys, str(mtd), "--dem", event["dem"], "--out",
                          str(tmp_path / "s.zarr"))
    line = _error(rc, lines)
    assert f"{mtd}: this is the metadata of a SAFE product, not an image" in line
    assert f"give the .SAFE folder ({product})" in line and "0 bands" not in line
    with pytest.raises(InputError, match="give the .SAFE folder"):
        resolve_input(mtd, event["dem"])


def _only_60m(product: Path, dst: Path) -> Path:
    """A copy of the product holding only its R60m folder, every band there at 60 m (as a
    partial download of a real L2A product would), its metadata listing those files."""
    safe = dst / product.name
    shutil.copytree(product, safe)
    img = next(safe.glob("GRANULE/*/IMG_DATA"))
    for res in (10, 20):
        for jp2 in sorted((img / f"R{res}m").glob("*_B*_*m.jp2")):
            out = img / "R60m" / jp2.name.replace(f"_{res}m.jp2", "_60m.jp2")
            with rasterio.open(jp2) as src:
                f = 60 // res
                data = src.read(out_shape=(1, src.height // f, src.width // f),
                                resampling=Resampling.average)
                profile = {**src.profile, "height": data.shape[1], "width": data.shape[2],
                           "transform": src.transform * src.transform.scale(f)}
            if not out.exists():
                with rasterio.open(out, "w", **profile) as o:
                    o.write(data)
        shutil.rmtree(img / f"R{res}m")
    mtd = safe / "MTD_MSIL2A.xml"
    text = re.sub(r"IMG_DATA/R(10|20)m/(\S+?)_(10|20)m<", r"IMG_DATA/R60m/\2_60m<",
                  mtd.read_text())
    mtd.write_text(text)
    return safe


def test_a_safe_with_only_its_60m_bands_is_mapped_with_a_warning(event, tmp_path, capsys):
    safe = _only_60m(Path(event["granules"]["A"]["post"]["product"]), tmp_path)
    product = read_safe(safe)
    assert product.coarse == {b: 60 for b in ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A",
                                              "B11", "B12")}
    spec = resolve_input(safe, event["dem"])
    note = spec.details["resolution_note"]
    assert note.startswith(f"{safe}: B2/B3/B4/B5/B6/B7/B8/B8A/B11/B12 only at 60 m")
    assert "\n" not in note and note in spec.mask_note
    store = _tiled(spec, tmp_path / "s.zarr")
    assert note in open_group(store).attrs["source"]["mask"]["note"]
    rc, lines = _tile_job(capsys, str(safe), "--dem", event["dem"], "--out", str(store))
    notes = [line for line in lines if "note:" in line]
    assert rc == 0 and len(notes) == 1 and "only at 60 m" in notes[0], lines


def test_a_complete_safe_gets_no_resolution_note(event):
    product = read_safe(event["granules"]["A"]["post"]["product"])
    assert product.coarse == {}
    spec = resolve_input(event["granules"]["A"]["post"]["product"], event["dem"])
    assert spec.details["resolution_note"] is None


# --- E: loops of symbolic links ---------------------------------------------------------------

@pytest.fixture()
def loop(tmp_path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


def test_a_symlink_loop_as_input_or_dem_is_one_line(event, tmp_path, capsys, loop):
    stack = event["granules"]["A"]["post"]["stack"]
    product = event["granules"]["A"]["post"]["product"]
    out = str(tmp_path / "s.zarr")
    for argv, option in (([str(loop)], "input"), ([product, "--dem", str(loop)], "--dem"),
                         ([stack, "--mask", str(loop)], "--mask")):
        rc, lines = _tile_job(capsys, *argv, "--out", out)
        line = _error(rc, lines)
        assert f"argument {option}: {loop}: the path is a loop of symbolic links" in line
    for argv in ([str(loop)], [stack, "--dem", str(loop)], [stack, "--pre", str(loop)]):
        try:
            rc = infer_job.main([*argv, "--model", str(tmp_path), "--out", str(tmp_path / "o")])
        except SystemExit as exc:
            rc = int(exc.code or 0)
        line = _error(rc, capsys.readouterr().err.strip().splitlines(), "jobs.infer")
        assert "loop of symbolic links" in line
    assert not (tmp_path / "o").exists()


def test_the_library_refuses_a_symlink_loop_in_one_line(event, loop):
    stack = event["granules"]["A"]["post"]["stack"]
    with pytest.raises(InputError, match="the input is a loop of symbolic links"):
        resolve_input(loop)
    with pytest.raises(InputError, match="--dem is a loop of symbolic links"):
        resolve_input(event["granules"]["A"]["post"]["product"], loop)
    with pytest.raises(InputError, match="--mask is a loop of symbolic links"):
        resolve_input(stack, mask=loop)
