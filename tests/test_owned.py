"""Issue 20, files of the user: a job writes only into a folder that is new, empty or its own,
and replaces only files it wrote (``common.owned``). Each case makes its own files; the jobs
that load TensorFlow run as subprocesses, like tests/test_train_inputs.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import owned
from common.errors import ForeignFileError
from jobs import synth
from tests.data.l4s import data as l4s_data

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return env


def _run(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _error_line(code: int | subprocess.CompletedProcess, stderr: str, prog: str) -> str:
    rc = code if isinstance(code, int) else code.returncode
    lines = stderr.strip().splitlines()
    assert rc == 2, stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert lines[0].startswith(f"python -m {prog}: error: "), lines[0]
    return lines[0]


def _synth(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    try:
        code = synth.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the guard itself --------------------------------------------------------------------------

def test_a_folder_of_the_user_is_refused_and_an_own_one_reused(tmp_path):
    mine = tmp_path / "mine"
    (mine / "TrainData").mkdir(parents=True)
    (mine / "TrainData" / "image_1.h5").write_text("the user's")
    with pytest.raises(ForeignFileError, match=r"mine: OUT is not empty and was not made by "
                                               r"python -m jobs\.x"):
        owned.claim_folder(mine, "jobs.x")
    assert sorted(p.name for p in mine.iterdir()) == ["TrainData"]

    new = owned.claim_folder(tmp_path / "new" / "deeper", "jobs.x")
    owned.write_text(new / "a.json", "1", "jobs.x")
    assert owned.claim_folder(new, "jobs.x") == new  # its own: reused
    owned.write_text(new / "a.json", "2", "jobs.x")  # its own file: replaced
    assert (new / "a.json").read_text() == "2"
    with pytest.raises(ForeignFileError, match="was made by python -m jobs.x, not python -m "
                                               "jobs.y"):
        owned.claim_folder(new, "jobs.y")


def test_a_file_of_the_user_or_one_changed_since_is_never_replaced(tmp_path):
    (tmp_path / "dataset.json").write_text("the user's")
    with pytest.raises(ForeignFileError, match="dataset.json: a file that python -m jobs.x did "
                                               "not write is there"):
        owned.write_text(tmp_path / "dataset.json", "{}", "jobs.x")
    assert (tmp_path / "dataset.json").read_text() == "the user's"

    owned.write_text(tmp_path / "scores.json", "1", "jobs.x")
    (tmp_path / "scores.json").write_text("edited by the user")
    with pytest.raises(ForeignFileError, match="scores.json: changed since python -m jobs.x "
                                               "wrote it"):
        owned.write_text(tmp_path / "scores.json", "2", "jobs.x")
    # a folder holding one file of the job is not the job's folder
    with pytest.raises(ForeignFileError, match="not made by"):
        owned.claim_folder(tmp_path, "jobs.x")


def test_an_interrupted_write_leaves_the_earlier_output(tmp_path):
    owned.write_text(tmp_path / "out.txt", "earlier", "jobs.x")
    with pytest.raises(RuntimeError), owned.output_file(tmp_path / "out.txt", "jobs.x") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "out.txt").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == [owned.MARKER, "out.txt"]


# --- jobs.synth --------------------------------------------------------------------------------

def test_synth_patches_refuses_a_landslide4sense_folder(tmp_path, capsys):
    release = l4s_data.make_l4s(tmp_path / "l4s", n_train=4, n_valid=2)  # no dataset.json
    before = _snapshot(release)
    code, err = _synth(capsys, "patches", str(release), "--n-train", "4", "--n-valid", "4",
                       "--workers", "1")
    line = _error_line(code, err, "jobs.synth")
    assert f"{release}: OUT is not empty and was not made by python -m jobs.synth" in line
    assert "give a new or empty folder" in line
    assert _snapshot(release) == before and not (release / owned.MARKER).exists()


def test_synth_patches_rewrites_its_own_folder(tmp_path, capsys):
    out = tmp_path / "p"
    for n in ("4", "8"):
        code, err = _synth(capsys, "patches", str(out), "--n-train", n, "--n-valid", "4",
                           "--workers", "1")
        assert code == 0, err
    assert len(list((out / "TrainData" / "img").iterdir())) == 8
    assert json.loads((out / "dataset.json").read_text())["n_train"] == 8


def test_synth_scene_refuses_to_replace_a_file_of_the_user(tmp_path, capsys):
    out = tmp_path / "s"
    code, err = _synth(capsys, "scene", str(out), "--height", "40", "--width", "40")
    assert code == 0, err
    code, err = _synth(capsys, "scene", str(out), "--height", "40", "--width", "40")
    assert code == 0, err  # its own outputs: replaced
    (out / "truth.tif").write_bytes(b"the user's truth")
    before = _snapshot(out)
    code, err = _synth(capsys, "scene", str(out), "--height", "40", "--width", "40")
    line = _error_line(code, err, "jobs.synth")
    assert f"{out / 'truth.tif'}: changed since python -m jobs.synth wrote it" in line
    assert _snapshot(out) == before

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "scene.tif").write_bytes(b"the user's scene")
    code, err = _synth(capsys, "scene", str(theirs), "--height", "40", "--width", "40")
    line = _error_line(code, err, "jobs.synth")
    assert f"{theirs}: OUT is not empty and was not made by python -m jobs.synth" in line
    assert sorted(p.name for p in theirs.iterdir()) == ["scene.tif"]


def test_synth_scene_refuses_a_user_file_among_its_products_before_writing(tmp_path, capsys):
    out = tmp_path / "s"
    code, err = _synth(capsys, "scene", str(out), "--height", "40", "--width", "40")
    assert code == 0, err
    (out / "dem.tif").unlink()
    (out / "dem.tif").write_bytes(b"the user's DEM")
    before = _snapshot(out)
    code, err = _synth(capsys, "scene", str(out), "--height", "40", "--width", "40",
                       "--seed", "3")
    line = _error_line(code, err, "jobs.synth")
    assert f"{out / 'dem.tif'}: changed since python -m jobs.synth wrote it" in line
    assert _snapshot(out) == before  # scene.tif and truth.tif not rewritten either


def test_synth_event_refuses_a_folder_of_the_user(tmp_path, capsys):
    out = tmp_path / "e"
    out.mkdir()
    (out / "event.json").write_text("the user's")
    code, err = _synth(capsys, "event", str(out), "--height", "12", "--width", "12",
                       "--overlap", "6")
    line = _error_line(code, err, "jobs.synth")
    assert f"{out}: OUT is not empty" in line
    assert sorted(p.name for p in out.iterdir()) == ["event.json"]


# --- jobs.evaluate and jobs.train ------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset_and_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """A small dataset with its dataset.json and an untrained bundle that accepts it."""
    from unet.bundle import Bundle, save_bundle
    from unet.model import build_unet

    root = tmp_path_factory.mktemp("eval")
    data = l4s_data.make_l4s(root / "data", n_train=2, n_valid=4,
                             convention="s2-reflectance-v1")
    model = root / "model"
    save_bundle(model, build_unet(bands=14, base_width=2, depth=1), Bundle(
        bands=list(l4s_data.BANDS), tile_size=32, convention="s2-reflectance-v1",
        normalization={"mean": [1.0] * 14, "std": [1.0] * 14, "clip": 10.0}, threshold=0.5))
    return data, model


def test_evaluate_does_not_overwrite_the_dataset_description(dataset_and_bundle, tmp_path):
    data, model = dataset_and_bundle
    before = (data / "dataset.json").read_bytes()
    r = _run("jobs.evaluate", "--data", str(data), "--model", str(model), "--json",
             str(data / "dataset.json"))
    line = _error_line(r, r.stderr, "jobs.evaluate")
    assert (f"{data / 'dataset.json'}: a file that python -m jobs.evaluate did not write is "
            f"there") in line
    assert (data / "dataset.json").read_bytes() == before

    figure = tmp_path / "figure.png"
    figure.write_bytes(b"the user's picture")
    r = _run("jobs.evaluate", "--data", str(data), "--model", str(model), "--figure",
             str(figure))
    line = _error_line(r, r.stderr, "jobs.evaluate")
    assert f"{figure}: a file that python -m jobs.evaluate did not write is there" in line
    assert figure.read_bytes() == b"the user's picture"

    scores = tmp_path / "scores.json"
    for _ in range(2):  # its own file: written, then replaced
        r = _run("jobs.evaluate", "--data", str(data), "--model", str(model), "--json",
                 str(scores))
        assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(scores.read_text())["split"] == "ValidData"


def test_train_refuses_an_out_folder_of_other_files(tmp_path):
    data = l4s_data.make_l4s(tmp_path / "data", n_train=8, n_valid=2)
    out = tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    (out / "logs").mkdir()
    r = _run("jobs.train", "--data", str(data), "--out", str(out), "--epochs", "1",
             "--base-width", "2", "--depth", "1", "--batch-size", "4", "--quiet")
    line = _error_line(r, r.stderr, "jobs.train")
    assert f"{out}: --out is not empty and was not made by python -m jobs.train" in line
    assert sorted(p.name for p in out.iterdir()) == ["logs", "notes.txt"]
    assert not list((out / "logs").iterdir())
