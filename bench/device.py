"""GPU figures for --device-report: the bare model in float32, mixed bfloat16 and with XLA,
and the matrix peak of the same GPU measured with a large matmul in each precision."""

import time

import keras
import numpy as np
import tensorflow as tf

from bench.ceiling import flops_per_tile, matmul_gflops, model_tiles_per_second
from unet.model import build_unet


def _tiles_per_s(policy: str, xla: bool) -> float:
    keras.mixed_precision.set_global_policy(policy)
    try:
        return model_tiles_per_second(build_unet(), batch=256, seconds=5.0, jit_compile=xla)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _samples_per_s(policy: str, xla: bool, batch: int = 64, steps: int = 30) -> float:
    from unet.loss import LandslideLoss

    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_unet()
        model.compile(optimizer="adam", loss=LandslideLoss(), jit_compile=xla)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, 128, 128, 14), dtype=np.float32)
        y = (rng.random((batch, 128, 128, 1)) < 0.03).astype(np.float32)
        model.train_on_batch(x, y)
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        return batch * steps / (time.perf_counter() - t0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def gpu_figures() -> dict:
    flops = flops_per_tile(build_unet())
    peaks = {name: matmul_gflops(8192, 3.0, dtype) / 1e3
             for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16))}
    out = {"gpu": tf.config.experimental.get_device_details(
        tf.config.list_physical_devices("GPU")[0]).get("device_name", "GPU"),
        "matmul_tflops": peaks}
    for name, policy, xla, peak in (("float32", "float32", False, "float32"),
                                    ("mixed_bfloat16", "mixed_bfloat16", False, "bfloat16"),
                                    ("float32 + XLA", "float32", True, "float32"),
                                    ("mixed_bfloat16 + XLA", "mixed_bfloat16", True, "bfloat16")):
        tps = _tiles_per_s(policy, xla)
        out[name] = {"tiles_per_s": tps,
                     "fraction_of_matmul_peak": tps * flops / 1e12 / peaks[peak],
                     "train_samples_per_s": _samples_per_s(policy, xla)}
    return out
