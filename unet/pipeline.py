"""`tf.data` pipelines over Landslide4Sense samples: parallel reads, seeded shuffling, augmentation.

Everything random is seeded from (seed, epoch) and the patch number, so the same epoch yields the
same batches on every worker of a multi-worker run and again after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unet.dataset import Sample, read_image, read_mask
from unet.quiet import import_tensorflow

tf = import_tensorflow()


def augment_pair(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Random horizontal/vertical flips and 90-degree rotations, identical for image and mask.

    The mask travels as one more channel of the image through the same transforms, so the two
    cannot drift apart. `seed` is a stateless seed, shape (2,) int.
    """
    bands = tf.shape(image)[-1]
    both = tf.concat([image, tf.cast(mask[..., None], image.dtype)], axis=-1)
    draws = tf.random.stateless_uniform((3,), seed=seed, minval=0, maxval=4, dtype=tf.int32)
    both = tf.cond(draws[0] >= 2, lambda: tf.reverse(both, axis=[1]), lambda: both)
    both = tf.cond(draws[1] >= 2, lambda: tf.reverse(both, axis=[0]), lambda: both)
    both = tf.image.rot90(both, k=draws[2])
    return both[..., :bands], tf.cast(both[..., bands], mask.dtype)


def _reader(with_mask: bool):
    def read(image_path, mask_path):
        x = read_image(image_path.decode())
        m = read_mask(mask_path.decode()) if with_mask else np.zeros(x.shape[:2], np.uint8)
        return x, m

    return read


def make_dataset(
    samples: Sequence[Sample],
    mean: Sequence[float],
    std: Sequence[float],
    clip: float,
    batch_size: int,
    *,
    training: bool,
    augment: bool = True,
    seed: int = 0,
    epoch: int = 0,
    pad_to_batch: bool = False,
    parallel_reads: int | None = None,
) -> tf.data.Dataset:
    """Batches of (image, mask, weight): normalised float32 (B, H, W, bands), float32 (B, H, W)
    masks (zeros when the split has none) and float32 (B,) sample weights.

    training: shuffle (seeded by seed and epoch), augment (unless augment=False), drop the last
    partial batch.
    pad_to_batch (evaluation): pad with weight-0 copies of the first sample up to a multiple of
    batch_size, so every replica of every worker runs the same number of steps.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("no samples")
    with_mask = all(s.mask is not None for s in samples)
    first = read_image(samples[0].image)
    shape = first.shape
    n_real = len(samples)
    weights = [1.0] * n_real
    if pad_to_batch and n_real % batch_size:
        pad = batch_size - n_real % batch_size
        samples = samples + [samples[0]] * pad
        weights = weights + [0.0] * pad
    image_paths = [str(s.image) for s in samples]
    mask_paths = [str(s.mask) if s.mask is not None else "" for s in samples]
    numbers = [s.index for s in samples]
    ds = tf.data.Dataset.from_tensor_slices(
        (image_paths, mask_paths, tf.constant(numbers, tf.int64), tf.constant(weights, tf.float32))
    )
    if training:
        ds = ds.shuffle(len(samples), seed=seed * 100_003 + epoch, reshuffle_each_iteration=False)
    mean_t = tf.constant(mean, tf.float32)
    std_t = tf.constant([s if s > 0 else 1.0 for s in std], tf.float32)
    read = _reader(with_mask)

    def load(image_path, mask_path, number, weight):
        x, m = tf.numpy_function(read, [image_path, mask_path], [tf.float32, tf.uint8])
        x.set_shape(shape)
        m.set_shape(shape[:2])
        if training and augment:
            aug_seed = tf.stack([tf.cast(seed * 1_000 + epoch, tf.int64), number])
            x, m = augment_pair(x, m, aug_seed)
        x = tf.clip_by_value((x - mean_t) / std_t, -clip, clip)
        return x, tf.cast(m, tf.float32), weight

    ds = ds.map(load, num_parallel_calls=parallel_reads or tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training or pad_to_batch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.experimental_deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def epochs_dataset(
    samples: Sequence[Sample],
    mean: Sequence[float],
    std: Sequence[float],
    clip: float,
    batch_size: int,
    *,
    epochs: Sequence[int],
    steps: int,
    augment: bool = True,
    seed: int = 0,
) -> tf.data.Dataset:
    """The first `steps` training batches of each of `epochs`, one epoch after the other: the
    same batches as `make_dataset(..., epoch=e).take(steps)` for each e, in one dataset.

    Why one dataset: a training loop then makes one (distributed) iterator per run instead of
    one per epoch. Deleting MirroredStrategy's multi-device iterator at the end of an epoch
    blocked for 1-8 s on 2 CPU replicas (measured: 8.5 s after the first epoch, 1.2 s after the
    next, against 4 s of training steps), which made mirrored training slower than the default
    strategy; the next epoch's batches are also read while the current one is validated.
    """
    if not epochs:
        raise ValueError("no epochs")
    per_epoch = [
        make_dataset(samples, mean, std, clip, batch_size, training=True, augment=augment,
                     seed=seed, epoch=e).take(steps)
        for e in epochs
    ]
    ds = per_epoch[0]
    for more in per_epoch[1:]:
        ds = ds.concatenate(more)
    return ds.prefetch(tf.data.AUTOTUNE)
