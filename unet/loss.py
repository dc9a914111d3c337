"""The loss for a rare class: weighted binary cross-entropy plus a soft Jaccard term.

Written with `keras.ops` only, so it runs under any Keras backend and the saved model's
compile config can be restored (the loading side must import this module to register it).
"""

from __future__ import annotations

import keras
from keras import ops

from unet.config import LOSS_DEFAULTS

_EPS = 1e-7


def landslide_loss(
    y_true,
    y_pred,
    pos_weight: float = LOSS_DEFAULTS["pos_weight"],
    bce_weight: float = LOSS_DEFAULTS["bce_weight"],
    jaccard_weight: float = LOSS_DEFAULTS["jaccard_weight"],
    smooth: float = LOSS_DEFAULTS["smooth"],
):
    """Per-sample loss, shape (batch,).

    bce: mean over pixels of -(pos_weight * y log p + (1 - y) log(1 - p));
    jaccard: 1 - (sum(y p) + smooth) / (sum(y) + sum(p) - sum(y p) + smooth) per sample.
    loss = bce_weight * bce + jaccard_weight * jaccard.
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)), "float32")
    batch = ops.shape(y_pred)[0]
    y_true = ops.reshape(y_true, (batch, -1))
    y_pred = ops.reshape(y_pred, (batch, -1))
    p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
    bce = -(pos_weight * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    bce = ops.mean(bce, axis=1)
    inter = ops.sum(y_true * y_pred, axis=1)
    union = ops.sum(y_true, axis=1) + ops.sum(y_pred, axis=1) - inter
    jaccard = 1.0 - (inter + smooth) / (union + smooth)
    return bce_weight * bce + jaccard_weight * jaccard


@keras.saving.register_keras_serializable(package="landslide")
class LandslideLoss(keras.losses.Loss):
    """`landslide_loss` as a Keras loss (reduction over the batch as Keras configures it)."""

    def __init__(
        self,
        pos_weight: float = LOSS_DEFAULTS["pos_weight"],
        bce_weight: float = LOSS_DEFAULTS["bce_weight"],
        jaccard_weight: float = LOSS_DEFAULTS["jaccard_weight"],
        smooth: float = LOSS_DEFAULTS["smooth"],
        name: str = "landslide_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.pos_weight = float(pos_weight)
        self.bce_weight = float(bce_weight)
        self.jaccard_weight = float(jaccard_weight)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        return landslide_loss(
            y_true, y_pred, self.pos_weight, self.bce_weight, self.jaccard_weight, self.smooth
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            pos_weight=self.pos_weight,
            bce_weight=self.bce_weight,
            jaccard_weight=self.jaccard_weight,
            smooth=self.smooth,
        )
        return config

    def loss_config(self) -> dict:
        """The four weights, as recorded in bundle.json."""
        return {
            "pos_weight": self.pos_weight,
            "bce_weight": self.bce_weight,
            "jaccard_weight": self.jaccard_weight,
            "smooth": self.smooth,
        }
