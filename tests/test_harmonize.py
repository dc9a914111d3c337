"""--harmonize matches only the spectral bands (issue 19, item 4).

Slope (degrees) and DEM (metres) are physical quantities: percentile-matching them onto the
training data's would stretch a flat scene's slopes onto mountain slopes, and slope is the
model's main cue. Their planes of the network's input must be bit-identical with and without
--harmonize.
"""

import numpy as np
import pytest

from simulator.world import simulate_window
from tiler.bands import BANDS, SPECTRAL
from tiler.stats import harmonization
from unet.bundle import Bundle
from unet.predict import normalized_window

Q = [2, 50, 98]
PHYSICAL = [BANDS.index("slope"), BANDS.index("DEM")]


@pytest.fixture(scope="module")
def training() -> np.ndarray:
    """Training pixels (bands, n): a simulated mountain window."""
    img, _ = simulate_window(7, 3_000, -2_000, 256, 256)
    return img.reshape(len(BANDS), -1)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """Another sensor's, flatter scene (bands, h, w): brighter bands, gentler slopes, lower
    ground, so every band's percentiles differ from the training data's."""
    img, _ = simulate_window(8, -9_000, 4_000, 192, 160)
    img = img.astype(np.float32)
    img[:12] = img[:12] * np.float32(1.4) + np.float32(0.03)
    img[PHYSICAL[0]] *= np.float32(0.3)
    img[PHYSICAL[1]] = img[PHYSICAL[1]] * np.float32(0.2) + np.float32(11.5)
    return img


def bundle_of(training: np.ndarray) -> Bundle:
    return Bundle(bands=list(BANDS), tile_size=128, convention="s2-reflectance-v1",
                  normalization={"mean": training.mean(axis=1).tolist(),
                                 "std": training.std(axis=1).tolist(), "clip": 10.0},
                  threshold=0.5,
                  percentiles={"q": Q, "values": np.percentile(training, Q, axis=1).T.tolist()})


def scale_offset(scene: np.ndarray, training: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found = np.percentile(scene.reshape(len(BANDS), -1), Q, axis=1)  # as band_percentiles
    train = np.asarray(bundle_of(training).percentiles["values"], np.float64).T
    return harmonization(found, train, Q.index(2), Q.index(98))


def test_only_spectral_bands_get_a_scale_and_offset(scene, training):
    scale, offset = scale_offset(scene, training)
    assert scale.shape == offset.shape == (len(BANDS),)
    assert scale[PHYSICAL].tolist() == [1.0, 1.0] and offset[PHYSICAL].tolist() == [0.0, 0.0]
    spectral = [BANDS.index(b) for b in SPECTRAL if b != "B10"]  # B10 may be constant
    assert np.all(np.abs(scale[spectral] - 1.0) > 0.05)  # the spectral bands ARE matched


def test_harmonised_slope_and_dem_planes_are_bit_identical(scene, training):
    scale, offset = scale_offset(scene, training)
    bundle = bundle_of(training)
    ok = np.ones(scene.shape[1:], dtype=bool)
    ok[:, :7] = False
    plain = normalized_window(scene.copy(), ok, bundle)
    matched = normalized_window(scene.copy(), ok, bundle, tuple(map(float, scale)),
                                tuple(map(float, offset)))
    for b in PHYSICAL:
        assert np.array_equal(plain[..., b].view(np.uint32), matched[..., b].view(np.uint32))
    b4 = BANDS.index("B4")
    assert not np.allclose(plain[..., b4], matched[..., b4])  # harmonisation did act


def test_band_names_decide_which_planes_are_physical(scene, training):
    """A bundle of other bands (no DEM): the names, not the positions, pick what is matched."""
    bands = tuple(b for b in BANDS if b != "DEM")
    found = np.percentile(scene[:13].reshape(13, -1), Q, axis=1)
    train = np.percentile(training[:13] * 2.0, Q, axis=1)
    scale, offset = harmonization(found, train, 0, 2, bands=bands)
    assert (scale[12], offset[12]) == (1.0, 0.0)
    assert scale[11] != 1.0
    with pytest.raises(ValueError):
        harmonization(found, train, 0, 2)  # 13 columns, 14 default names
