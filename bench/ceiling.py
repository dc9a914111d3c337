"""The irreducible cost: the bare model on normalised tiles already in memory, and the machine's
practical float32 peak (a large matmul), measured in the same process."""

import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


def calls_per_second(fn: Callable[[], object], seconds: float) -> float:
    """Calls of fn per second over about `seconds`, after one warm-up call (tracing)."""
    fn()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        reps += 1
    return reps / (time.perf_counter() - t0)


def matmul_gflops(n: int = 2048, seconds: float = 3.0, dtype: tf.DType = tf.float32) -> float:
    """GFLOP/s of an n x n matmul (2 n^3 FLOP each), TensorFlow on all devices' cores."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    mm = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, a), tf.float32)))
    return 2 * n**3 * calls_per_second(lambda: mm().numpy(), seconds) / 1e9


def flops_per_tile(model: keras.Model, tile: int = 128) -> float:
    """FLOP (a multiply-add counted as 2) of one forward pass on a tile x tile input,
    from the convolution kernels and the output sizes (other layers are negligible)."""
    convs = [layer for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose)]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    bands = model.inputs[0].shape[-1]
    outs = probe(np.zeros((1, tile, tile, bands), np.float32), training=False)
    total = 0.0
    for layer, out in zip(convs, outs, strict=True):
        kh, kw, *_ = layer.kernel.shape
        cin_cout = np.prod(layer.kernel.shape[2:])
        h, w = out.shape[1], out.shape[2]
        if isinstance(layer, keras.layers.Conv2DTranspose):
            h, w = h // layer.strides[0], w // layer.strides[1]
        total += 2.0 * h * w * kh * kw * cin_cout
    return total


def model_tiles_per_second(model: keras.Model, batch: int = 64, tile: int = 128,
                           seconds: float = 10.0, jit_compile: bool = False) -> float:
    """Tiles/s of a compiled inference call on a batch of normalised tiles in memory."""
    bands = model.inputs[0].shape[-1]
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, tile, tile, bands),
                                                               dtype=np.float32))
    call = tf.function(lambda t: model(t, training=False), jit_compile=jit_compile)
    return batch * calls_per_second(lambda: call(x).numpy(), seconds)
