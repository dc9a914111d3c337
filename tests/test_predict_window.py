"""predict_window and its test-time augmentation (--tta), on a small random U-Net.

The mean over the 8 flips and rotations, each undone, is equivariant by construction: rotating
or flipping the input rotates or flips the output. A random network alone is not, so the same
check without TTA must fail; a mistake in undoing one of the 8 transforms breaks the equality.
"""

import keras
import numpy as np
import pytest

from unet.model import build_unet
from unet.predict import predict_window


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    net = build_unet(bands=3, base_width=4, depth=2)
    return lambda x: net(x, training=False)


@pytest.fixture(scope="module")
def window():
    return np.random.default_rng(5).standard_normal((64, 64, 3)).astype(np.float32)


TRANSFORMS = {
    "rot90": lambda a: np.rot90(a, 1, axes=(0, 1)),
    "rot180": lambda a: np.rot90(a, 2, axes=(0, 1)),
    "flip_lr": lambda a: a[:, ::-1],
    "transpose": lambda a: np.swapaxes(a, 0, 1),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_tta_is_equivariant(model, window, name):
    t = TRANSFORMS[name]
    out = predict_window(model, window, tta=True)
    assert out.shape == (64, 64) and out.dtype == np.float32
    np.testing.assert_allclose(predict_window(model, np.ascontiguousarray(t(window)), tta=True),
                               t(out), atol=1e-5)


def test_without_tta_the_network_is_not_equivariant(model, window):
    out = predict_window(model, window)
    turned = predict_window(model, np.ascontiguousarray(np.rot90(window, 1, axes=(0, 1))))
    assert np.abs(turned - np.rot90(out, 1, axes=(0, 1))).max() > 1e-3
