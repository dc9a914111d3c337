"""The figures people look at: learning curves (jobs.train), the evaluation panel (jobs.evaluate
--figure) and the scene summary (jobs.infer --figure), each drawn from tiny data and checked as a
PNG (opens, expected size, not blank); the summary as an owned output of the scene job; and
matplotlib kept out of the processes that draw nothing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.crs import CRS

from common import provenance
from common.errors import OutputError
from mapping.outputs import (
    OUTPUTS,
    OWNED,
    check_outputs_owned,
    publish,
    work_folder,
)
from products.histograms import probability_histogram
from products.summary_figure import write_summary_figure
from tests.data.model.data import make_bundle
from tests.oracles import landslides_from, write_preview, write_probability, write_threshold
from tiler.bands import BANDS
from tiler.grid import Grid
from tiler.predictions import PROBABILITY, open_predictions, prepare_predictions
from tiler.store import create_store, mark_complete, write_block
from unet import figures
from unet.figures import PatchView, draw_evaluation, draw_training, error_image, stretch

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "l4s_data", Path(__file__).parent / "data" / "l4s" / "data.py")
l4s_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(l4s_data)


def assert_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The PNG at ``path`` opens, is ``size`` (width, height) and is not blank; its RGB pixels."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size
        rgb = np.asarray(im.convert("RGB"))
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 20, f"{path}: {len(colours)} colours, looks blank"
    assert (rgb.min(axis=-1) < 200).mean() > 0.01, f"{path}: almost all white"
    assert not list(path.parent.glob(f".{path.stem}.tmp*")), "temporary file left behind"
    return rgb


def _history(n: int) -> list[dict]:
    return [{"epoch": e, "loss": 1 / e, "val_loss": 1.1 / e, "val_best_f1": 0.5 + 0.05 * e,
             "val_best_precision": 0.6, "val_best_recall": 0.4 + 0.05 * e,
             "threshold": 0.3 + 0.02 * e} for e in range(1, n + 1)]


# -- learning curves --------------------------------------------------------------------------

@pytest.mark.parametrize("epochs", [1, 6])
def test_learning_curves_png(tmp_path, epochs):
    path = draw_training(_history(epochs), tmp_path / "training.png")
    assert_png(path, (1200, 360))


def test_learning_curves_replace_the_earlier_figure_atomically(tmp_path):
    path = tmp_path / "training.png"
    draw_training(_history(2), path)
    first = path.read_bytes()
    draw_training(_history(3), path)
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training.png"]


def test_learning_curves_need_an_epoch(tmp_path):
    with pytest.raises(ValueError, match="no epoch"):
        draw_training([], tmp_path / "training.png")


@pytest.fixture(scope="module")
def l4s(tmp_path_factory) -> Path:
    return l4s_data.make_l4s(tmp_path_factory.mktemp("l4s"), n_train=16, n_valid=12)


def _train(data: Path, out: Path, epochs: int, resume: bool = False):
    from unet.training import TrainConfig, train

    return train(TrainConfig(data=data, out=out, epochs=epochs, batch_size=8, base_width=4,
                             depth=2, resume=resume, verbose=False))


@pytest.fixture(scope="module")
def trained(l4s, tmp_path_factory):
    """A tiny model trained for 2 epochs, then resumed to 3, with every drawing recorded."""
    out = tmp_path_factory.mktemp("train") / "model"
    drawn: list[list[int]] = []
    real = figures.draw_training

    def recording(history, path):
        drawn.append([h["epoch"] for h in history])
        return real(history, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "draw_training", recording)
        _train(l4s, out, 2)
        after_two = (out / "training.png").read_bytes()
        _train(l4s, out, 3, resume=True)
    return out, drawn, after_two


def test_training_draws_the_curves_after_every_epoch_and_a_resume_continues_them(trained):
    out, drawn, after_two = trained
    assert drawn == [[1], [1, 2], [1, 2, 3]]
    assert (out / "training.png").read_bytes() != after_two
    assert_png(out / "training.png", (1200, 360))
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]


def test_a_figure_that_fails_never_fails_training(l4s, tmp_path, monkeypatch, caplog):
    def broken(history, path):
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(figures, "draw_training", broken)
    with caplog.at_level("WARNING", logger="unet.training"):
        result = _train(l4s, tmp_path / "model", 2)
    assert len(result.history) == 2 and (tmp_path / "model" / "bundle.json").exists()
    warnings = [r for r in caplog.records if r.name == "unet.training"]
    assert len(warnings) == 1  # once per run, not once per epoch
    assert "training.png" in warnings[0].getMessage()
    assert "no fonts today" in warnings[0].getMessage()
    assert not (tmp_path / "model" / "training.png").exists()


# -- evaluation -------------------------------------------------------------------------------

def test_pick_patches_worst_median_best():
    from unet.evaluation import patch_f1, pick_patches

    rng = np.random.default_rng(1)
    counts = rng.integers(0, 50, size=(30, 3))
    counts[[3, 7]] = 0  # nothing to find, nothing found: left out
    picks = pick_patches(counts, per_group=4)
    f1 = patch_f1(counts)
    assert [len(picks[g]) for g in ("worst", "median", "best")] == [4, 4, 4]
    chosen = np.concatenate(list(picks.values()))
    assert len(set(chosen.tolist())) == 12 and not {3, 7} & set(chosen.tolist())
    others = np.setdiff1d(np.arange(30), [3, 7])
    assert f1[picks["worst"]].max() <= np.sort(f1[others])[3]
    assert f1[picks["best"]].min() >= np.sort(f1[others])[-4]
    assert f1[picks["worst"]].max() <= f1[picks["median"]].min()
    assert f1[picks["median"]].max() <= f1[picks["best"]].min()
    assert patch_f1(np.array([[0, 0, 0], [1, 1, 0]])).tolist() == [1.0, 2 / 3]


def test_precision_recall_curve_from_histograms():
    from unet.evaluation import precision_recall_curve

    pos = np.array([0, 1, 0, 3])  # positive pixels at probabilities in bins 1 and 3
    neg = np.array([4, 0, 2, 0])
    recall, precision = precision_recall_curve(pos, neg)
    # thresholds 0, 1/4, 2/4, 3/4: all predicted, then p >= 0.25, >= 0.5, >= 0.75
    np.testing.assert_allclose(recall, [1, 1, 0.75, 0.75])
    np.testing.assert_allclose(precision, [4 / 10, 4 / 6, 3 / 5, 1])


def test_error_image_colours():
    truth = np.array([[1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0]], bool)
    img = error_image(truth, pred)
    expected = [figures.ERROR_COLOURS["true positive"], figures.ERROR_COLOURS["false negative"],
                figures.ERROR_COLOURS["false positive"], figures.BACKGROUND]
    np.testing.assert_allclose(img[0], expected)


def test_stretch_spreads_dark_patches_over_the_range():
    rgb = np.random.default_rng(0).uniform(0.02, 0.05, (16, 16, 3))
    out = stretch(rgb)
    assert out.min() == 0 and out.max() == 1
    assert stretch(np.full((4, 4, 3), np.nan)).max() == 0


def test_evaluation_panel_png(tmp_path):
    rng = np.random.default_rng(0)
    truth = np.zeros((32, 32), bool)
    truth[8:20, 4:28] = True
    patches = [PatchView(f"image_{i}.h5", group, stretch(rng.random((32, 32, 3))), truth,
                         np.roll(truth, i, axis=0), 1 - i / 12)
               for i, group in enumerate(g for g in figures.GROUPS for _ in range(4))]
    curve = (np.linspace(0, 1, 50), np.linspace(1, 0.2, 50))
    path = draw_evaluation(tmp_path / "e.png", "ValidData", curve, (0.6, 0.7, 0.5), patches)
    assert_png(path, (1800, 1000))


def test_evaluate_job_draws_the_figure(trained, l4s, tmp_path, capsys):
    from jobs.evaluate import main

    model, _, _ = trained
    figure = tmp_path / "evaluation.png"
    assert main(["--data", str(l4s), "--model", str(model), "--figure", str(figure),
                 "--json", str(tmp_path / "e.json")]) == 0
    rgb = assert_png(figure, (1800, 1000))
    for colour in figures.ERROR_COLOURS.values():  # the legend's swatches, at least
        target = (np.asarray(colour) * 255).round()
        assert (np.abs(rgb - target).max(axis=-1) <= 2).sum() > 50
    assert json.loads((tmp_path / "e.json").read_text())["tiles"] == 12
    assert f"figure: {figure}" in capsys.readouterr().out


def test_evaluate_views_match_the_split_counts(trained, l4s):
    from unet.bundle import load_bundle
    from unet.dataset import list_split
    from unet.evaluation import patch_f1, patch_views, pick_patches, score_split

    model, bundle = load_bundle(trained[0])
    samples = list_split(l4s, "ValidData")
    result = score_split(model, bundle, samples)
    assert result.counts.shape == (12, 3)
    assert result.summary()["tp"] == result.counts[:, 0].sum()
    assert result.pos_hist.sum() + result.neg_hist.sum() == 12 * 32 * 32
    picks = pick_patches(result.counts, 4)
    views = patch_views(model, bundle, samples, picks, result.threshold)
    assert [v.group for v in views] == ["worst"] * 4 + ["median"] * 4 + ["best"] * 4
    f1 = patch_f1(result.counts)
    for view, index in zip(views, np.concatenate(list(picks.values())), strict=True):
        assert view.name == samples[index].image.name
        assert view.f1 == pytest.approx(f1[index], abs=1e-6)
        assert view.rgb.shape == (32, 32, 3) and 0 <= view.rgb.min() <= view.rgb.max() <= 1


@pytest.mark.parametrize("name, problem", [("e.txt", "must name a .png"),
                                           ("nowhere/e.png", "does not exist")])
def test_evaluate_refuses_a_figure_it_cannot_write(trained, l4s, tmp_path, capsys, name,
                                                   problem):
    from jobs.evaluate import main

    assert main(["--data", str(l4s), "--model", str(trained[0]), "--figure",
                 str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("python -m jobs.evaluate: error: ")
    assert problem in err


# -- the scene summary ------------------------------------------------------------------------

CRS_WKT = CRS.from_epsg(32633).to_wkt()


@pytest.fixture(scope="module")
def mapped(tmp_path_factory) -> tuple:
    """A tiny scene store (300 x 260 px, a nodata edge) with probabilities: two bright blobs of
    high probability; the thresholded rasters and the preview, as jobs.infer writes them."""
    work = tmp_path_factory.mktemp("mapped")
    grid = Grid(CRS_WKT, (10.0, 0.0, 500_000.0, 0.0, -10.0, 4_000_000.0), 300, 260)
    store = create_store(work / "tiles.zarr", grid, {"input": "test"})
    h, w = grid.padded_height, grid.padded_width
    rng = np.random.default_rng(0)
    image = rng.uniform(0.02, 0.2, (len(BANDS), h, w)).astype(np.float32)
    valid = np.zeros((h, w), np.uint8)
    valid[: grid.height, 20: grid.width] = 1
    yy, xx = np.mgrid[:h, :w]
    prob = 0.45 * rng.beta(1, 8, (h, w))  # background below the threshold
    for cy, cx, r in ((80, 100, 15), (200, 180, 25)):
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        prob[blob] = 0.9
        image[3, blob] += 0.3
    write_block(store, grid, 0, 0, image * valid, valid)
    mark_complete(store)
    predictions = work / "predictions.zarr"
    prepare_predictions(predictions, grid, provenance.make("predictions", {"test": 1}))
    prob[valid == 0] = np.nan
    open_predictions(predictions, "r+")[PROBABILITY][...] = prob.astype(np.float32)
    write_probability(predictions, grid, work / "probability.raw.tif")
    write_threshold(predictions, grid, 0.5, work / "threshold.raw.tif")
    found = landslides_from(work / "threshold.raw.tif", work / "probability.raw.tif", 200.0)
    write_preview(store, grid, found.polygons, work / "preview.png")
    return predictions, grid, work, found


def test_probability_histogram_counts_every_valid_pixel_once(mapped):
    store, grid, work, _ = mapped
    counts, edges = probability_histogram(store, grid, bins=20)
    with rasterio.open(work / "probability.raw.tif") as src:
        p = src.read(1)
    assert counts.sum() == np.isfinite(p).sum() == 300 * 240
    assert counts[edges[:-1] >= 0.5].sum() == (p >= 0.5).sum()
    assert len(edges) == 21 and edges[0] == 0 and edges[-1] == 1


def test_summary_png(mapped, tmp_path):
    store, grid, work, found = mapped
    assert len(found.polygons) == 2
    path = write_summary_figure(work / "preview.png", store, grid, found, 0.5,
                                tmp_path / "summary.png")
    assert_png(path, (1500, 700))


def test_summary_png_without_landslides(mapped, tmp_path):
    from products.polygons import Landslides

    store, grid, work, _ = mapped
    nothing = Landslides([], np.zeros(0), np.zeros(0))
    path = write_summary_figure(work / "preview.png", store, grid, nothing, 0.95,
                                tmp_path / "summary.png")
    assert_png(path, (1500, 700))


def test_summary_into_a_missing_folder_is_an_output_error(mapped, tmp_path):
    store, grid, work, found = mapped
    with pytest.raises(OutputError, match="summary figure"):
        write_summary_figure(work / "preview.png", store, grid, found, 0.5,
                             tmp_path / "gone" / "summary.png")


def _publish_fake_run(out: Path, with_summary: bool) -> dict:
    work = work_folder(out)
    for name in OUTPUTS:
        if name != "report.json":
            (work / name).write_text(name)
    if with_summary:
        (work / "summary.png").write_text("summary")
    report = {"outputs": {name: str(out / name) for name in OUTPUTS}}
    publish(out, work, report)
    return json.loads((out / "report.json").read_text())


def test_summary_is_an_owned_output_only_when_written(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    report = _publish_fake_run(out, with_summary=True)
    assert (out / "summary.png").read_text() == "summary"
    assert "summary.png" in json.loads((out / OWNED).read_text())["outputs"]
    assert report["outputs"]["summary.png"] == str(out / "summary.png")
    report = _publish_fake_run(out, with_summary=False)  # the earlier summary is not this run's
    assert not (out / "summary.png").exists() and "summary.png" not in report["outputs"]
    assert "summary.png" not in json.loads((out / OWNED).read_text())["outputs"]
    (out / "summary.png").write_text("mine")  # the user's file of that name is never replaced
    with pytest.raises(OutputError, match="summary.png"):
        check_outputs_owned(out)
    with pytest.raises(OutputError):
        _publish_fake_run(out, with_summary=False)
    assert (out / "summary.png").read_text() == "mine"


# -- the scene job end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def scene_model(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("scene_model") / "m", n=16, epochs=1)


def test_infer_figure_publishes_summary_next_to_preview(scene_model, tmp_path, capsys):
    from jobs.infer import main
    from simulator.scene import write_scene

    write_scene(tmp_path / "scene", height=300, width=420, seed=5, workers=1)
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("local:\n  n_workers: 1\n  threads_per_worker: 2\n"
                       "  dashboard_address: null\n")
    out = tmp_path / "map"
    assert main([str(tmp_path / "scene" / "scene.tif"), "--model", str(scene_model), "--out",
                 str(out), "--cluster", str(cluster), "--figure"]) == 0, capsys.readouterr().err
    assert_png(out / "summary.png", (1500, 700))
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"]["summary.png"] == str(out.resolve() / "summary.png")
    assert "summary.png" in json.loads((out / OWNED).read_text())["outputs"]
    assert not (out / ".partial").exists()


# -- matplotlib stays out of the processes that draw nothing -----------------------------------

def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_figure_modules_import_matplotlib_only_to_draw():
    code = ("import sys, jobs.infer, jobs.evaluate, mapping.outputs, products.summary_figure, "
            "products.histograms, unet.figures, unet.matplotlib_guard; "
            "print('matplotlib' in sys.modules)")
    assert _python(code) == "False"


def test_worker_loads_the_model_without_matplotlib(scene_model):
    code = (
        "import sys, unet.predict\n"
        f"unet.predict.cached_model({str(scene_model)!r}, 1)\n"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules,"
        " sys.modules.get('matplotlib') is not None)\n"
        "import matplotlib\n"  # drawing still works afterwards in the same process
        "print(matplotlib.__version__)\n"
    )
    loaded, version = _python(code).splitlines()
    assert loaded == "True True False"
    assert version == "3.11.2"


def test_the_check_sees_matplotlib_when_keras_loads_it():
    assert _python("import sys, keras; print('matplotlib.pyplot' in sys.modules)") == "True"


def test_guard_blocks_matplotlib_until_the_outermost_block_ends():
    code = (
        "from unet.matplotlib_guard import matplotlib_kept_out\n"
        "def importable():\n"
        "    try:\n"
        "        import matplotlib.pyplot  # noqa: F401\n"
        "    except ImportError:\n"
        "        return False\n"
        "    return True\n"
        "with matplotlib_kept_out():\n"
        "    with matplotlib_kept_out():\n"
        "        inner = importable()\n"
        "    after_inner = importable()\n"
        "print(inner, after_inner, importable())\n"
    )
    assert _python(code) == "False False True"
