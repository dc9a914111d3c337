"""unet.scene_score: a bundle's mask on a whole simulated scene against its truth."""

import keras
import numpy as np
import pytest
import rasterio

from simulator.scene import write_scene
from tiler.bands import BANDS
from unet.bundle import Bundle, load_bundle, normalize, save_bundle
from unet.model import build_unet
from unet.scene_score import predict_scene, score_scene


@pytest.fixture(scope="module")
def scene_and_bundle(tmp_path_factory):
    scene = write_scene(tmp_path_factory.mktemp("scene"), 200, 180, seed=0, workers=1,
                        block=256)
    with rasterio.open(scene.scene) as src:
        img = src.read()
    mean = np.nanmean(img, axis=(1, 2)).tolist()
    std = np.nanstd(img, axis=(1, 2)).tolist()
    out = tmp_path_factory.mktemp("bundle")
    keras.utils.set_random_seed(0)
    save_bundle(out, build_unet(bands=14, base_width=2, depth=1), Bundle(
        bands=list(BANDS), tile_size=128, convention="s2-reflectance-v1",
        normalization={"mean": mean, "std": std, "clip": 10.0}, threshold=0.5,
        model={"base_width": 2, "depth": 1}))
    return scene, out, img


def test_windows_with_a_halo_give_one_pass_over_the_scene(scene_and_bundle):
    scene, model_dir, img = scene_and_bundle
    prob, threshold = predict_scene(model_dir, scene.scene, window=64, halo=8)
    model, bundle = load_bundle(model_dir)
    ok = np.all(np.isfinite(img), axis=0)
    x = normalize(np.moveaxis(np.nan_to_num(img), 0, -1), bundle)
    x[~ok] = 0.0
    whole = keras.ops.convert_to_numpy(model(x[None], training=False))[0, ..., 0]
    assert threshold == 0.5 and prob.shape == (200, 180)
    np.testing.assert_allclose(prob, whole, atol=1e-5)


def test_scores_count_the_valid_pixels_only(scene_and_bundle):
    scene, model_dir, _ = scene_and_bundle
    s = score_scene(model_dir, scene.scene.parent)
    prob, threshold = predict_scene(model_dir, scene.scene)
    with rasterio.open(scene.truth) as src:
        truth = src.read(1)
    valid = truth != 255
    pred, t = (prob >= threshold) & valid, (truth == 1) & valid
    tp = np.count_nonzero(pred & t)
    assert (~valid).any() and t.any()
    assert s["precision"] == pytest.approx(tp / max(np.count_nonzero(pred), 1))
    assert s["recall"] == pytest.approx(tp / np.count_nonzero(t))
    assert s["landslides"] >= 1 and 0 <= s["f1"] <= 1
