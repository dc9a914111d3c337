"""The training settings and their defaults: the one place they are written.

No TensorFlow here: `jobs.train` builds its command line (defaults included) from `TrainConfig`
before TensorFlow is imported, and `unet.loss` takes its default weights from `LOSS_DEFAULTS`,
so the command line, the training loop and the loss cannot disagree again (they did: the CLI
trained width 8 while `TrainConfig` said 16, and the loss said pos_weight 5 while training used 3).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from unet.normalize import DEFAULT_CLIP, DEFAULT_QUANTILES

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

LOSS_DEFAULTS = {"pos_weight": 3.0, "bce_weight": 1.0, "jaccard_weight": 1.0, "smooth": 1.0}
"""Weights of `unet.loss.landslide_loss` (weighted BCE + soft Jaccard)."""


@dataclass
class TrainConfig:
    data: Path
    out: Path
    epochs: int = 30
    batch_size: int = 16
    """The GLOBAL batch size (split over replicas and workers)."""
    lr: float = 2e-3
    seed: int = 0
    val_fraction: float = 0.1
    normalization: str = "train"
    """"train": streamed mean/std of the training split; "official": the L4S baseline values."""
    clip: float = DEFAULT_CLIP
    base_width: int = 8
    """Chosen by generalisation (bench.training): trained on the default world, width 8 mapped a
    scene of the other world at F1 0.923, width 16 at 0.466 (false positives on its confusers)."""
    depth: int = 4
    batch_norm: bool = True
    dropout: float = 0.0
    pos_weight: float = LOSS_DEFAULTS["pos_weight"]
    bce_weight: float = LOSS_DEFAULTS["bce_weight"]
    jaccard_weight: float = LOSS_DEFAULTS["jaccard_weight"]
    smooth: float = LOSS_DEFAULTS["smooth"]
    precision: str = "float32"
    resume: bool = False
    augment: bool = True
    hist_bins: int = 200
    tile_size: int | None = None
    """Patch size in pixels; None: the dataset's (the size most of its patches have)."""
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    percentile_pixels: int = 200_000
    steps_per_epoch: int | None = None
    """Cap on training steps per epoch (benchmarks); None = the whole training split."""
    worker_dir: Path | None = None
    """Where this process writes its final weights (final.weights.h5); every worker, chief
    included. None: a temporary folder that is deleted (non-chief workers must write somewhere
    that does not collide with the chief's MODEL_DIR)."""
    verbose: bool = True


def default(name: str):
    """The default of one `TrainConfig` setting (what the command line offers)."""
    for f in fields(TrainConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)
