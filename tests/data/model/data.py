"""A small trained model bundle for the inference tests, made from the simulator (seeded).

Trained for a few seconds only: enough that its probabilities are not all near 0.5, so the
mask-agreement and identity checks are meaningful.
"""

from pathlib import Path

import keras
import numpy as np

from simulator.world import simulate_window
from tiler.bands import BANDS, CONVENTION
from unet.bundle import save_bundle
from unet.loss import LandslideLoss
from unet.model import build_unet
from unet.normalize import normalize_array


def make_bundle(out_dir: Path, seed: int = 0, n: int = 48, epochs: int = 4,
                bands: tuple[str, ...] = BANDS) -> Path:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        r, c = (int(v) for v in rng.integers(-50_000, 50_000, size=2))
        img, mask = simulate_window(seed + 101, r, c, 128, 128)
        xs.append(np.moveaxis(img, 0, -1))
        ys.append(mask[..., None].astype(np.float32))
    x, y = np.stack(xs), np.stack(ys)
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    percentiles = np.percentile(x, [2, 50, 98], axis=(0, 1, 2)).T
    x = normalize_array(x, mean, std)
    model = build_unet(bands=len(bands), base_width=4, depth=3)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=LandslideLoss())
    model.fit(x[..., : len(bands)], y, batch_size=16, epochs=epochs, verbose=0)
    save_bundle(out_dir, model, {
        "bands": list(bands), "tile_size": 128, "convention": CONVENTION,
        "normalization": {"mean": mean.tolist()[: len(bands)], "std": std.tolist()[: len(bands)],
                          "clip": 10.0},
        "threshold": 0.5,
        "percentiles": {"q": [2, 50, 98],
                        "values": percentiles.tolist()[: len(bands)]},
    })
    return out_dir
