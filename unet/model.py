"""The U-Net: Keras layers only, so the `.keras` file loads with safe_mode under any backend."""

from __future__ import annotations

import keras
from keras import layers


def _conv_block(x, width: int, batch_norm: bool, dropout: float, name: str, sync: bool = False):
    """Two 3x3 convolutions, each followed by optional batch norm and ReLU.

    Batch norm momentum 0.9 (Keras default 0.99): runs here are a few hundred steps, and with
    0.99 the moving statistics used at inference lag far behind the weights for that long.
    """
    for i in (1, 2):
        x = layers.Conv2D(
            width, 3, padding="same", use_bias=not batch_norm, name=f"{name}_conv{i}"
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(
                momentum=0.9, synchronized=sync, name=f"{name}_bn{i}"
            )(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def build_unet(
    bands: int = 14,
    base_width: int = 16,
    depth: int = 4,
    batch_norm: bool = True,
    dropout: float = 0.0,
    sync_batch_norm: bool = False,
) -> keras.Model:
    """A U-Net mapping (batch, H, W, bands) to a landslide probability (batch, H, W, 1).

    H and W are free (None) so the same weights run on 128x128 tiles and on larger windows;
    they must be multiples of 2**depth. The output layer is float32 even under a mixed
    precision policy, so the loss and the probabilities keep full precision.

    sync_batch_norm: batch statistics over the GLOBAL batch (all replicas of all workers), for
    distributed training: otherwise each replica updates its moving statistics from its own
    slice and the workers end with different weights. TensorFlow backend only, so a model to be
    saved is rebuilt without it (same layer names, same weights).
    """
    if depth < 1 or base_width < 1 or bands < 1:
        raise ValueError("bands, base_width and depth must be positive")
    sync = sync_batch_norm and batch_norm
    inputs = keras.Input(shape=(None, None, bands), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_width * 2**level, batch_norm, 0.0, f"down{level}", sync)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, base_width * 2**depth, batch_norm, dropout, "bottleneck", sync)
    for level in reversed(range(depth)):
        width = base_width * 2**level
        x = layers.Conv2DTranspose(width, 2, strides=2, padding="same", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, width, batch_norm, 0.0, f"dec{level}", sync)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name=f"unet_w{base_width}_d{depth}")
