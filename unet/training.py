"""One custom training loop for every tf.distribute strategy.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the loop
is written by hand: model and optimizer built under `strategy.scope()`, a `tf.function` step that
calls `strategy.run` (loss = sum of per-sample losses / GLOBAL batch; the optimizer all-reduces
the gradients), and `strategy.reduce(SUM)` of the loss and of the tp/fp/fn counts. Evaluation is
distributed too and sums counts and probability histograms, so the F1-maximising threshold comes
out of one pass over the validation split.

MODEL_DIR (written by the chief only):
  checkpoints/state.json          the commit point of a checkpoint (epoch, best F1, statistics)
  checkpoints/epoch_NNNN.*        weights (.weights.h5) and optimizer variables (.optimizer.npz)
  checkpoints/best.weights.h5     weights of the best epoch by validation F1
  logs/                           TensorBoard scalars
  training.png                    learning curves, redrawn from the history after every epoch
  model.keras, bundle.json        the bundle (best weights, best threshold), at the end
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from common.errors import UnetError
from common.owned import write_json_atomic
from unet.bundle import Bundle, save_bundle
from unet.config import PRECISIONS, TrainConfig
from unet.dataset import check_samples, read_image, read_info, train_val_split
from unet.evaluation import input_batches
from unet.loss import landslide_loss
from unet.metrics import best_threshold, scores
from unet.model import build_unet
from unet.model_dir import claim_model_dir
from unet.normalize import OFFICIAL_MEAN, OFFICIAL_STD, streamed_stats
from unet.pipeline import epochs_dataset, make_dataset

TRAINING_FIGURE = "training.png"
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_epoch: int
    best_f1: float
    threshold: float
    metrics: dict
    history: list[dict] = field(default_factory=list)
    samples_per_second: float = 0.0
    """Mean training throughput over the epochs run in this process (excluding the first)."""


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes MODEL_DIR."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    spec = resolver.cluster_spec().as_dict()
    if not spec:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    if "chief" in spec:
        return False
    return task_type in (None, "worker") and (task_id or 0) == 0


def _checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


def _state_path(out: Path) -> Path:
    return _checkpoint_dir(out) / "state.json"


def read_state(out: Path) -> dict | None:
    path = _state_path(out)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UnetError(f"{path}: unreadable checkpoint state ({exc})") from exc


def _save_weights_atomic(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(f".{path.name[: -len('.weights.h5')]}.tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, path)


def _save_checkpoint(out: Path, model, optimizer, state: dict) -> None:
    ckpt = _checkpoint_dir(out)
    ckpt.mkdir(parents=True, exist_ok=True)
    stem = f"epoch_{state['epoch']:04d}"
    _save_weights_atomic(model, ckpt / f"{stem}.weights.h5")
    tmp = ckpt / f".{stem}.tmp.npz"
    np.savez(tmp, *[np.asarray(v.numpy()) for v in optimizer.variables])
    os.replace(tmp, ckpt / f"{stem}.optimizer.npz")
    state = {**state, "weights": f"{stem}.weights.h5", "optimizer": f"{stem}.optimizer.npz"}
    write_json_atomic(ckpt / "state.json", state)  # the commit point
    for old in ckpt.glob("epoch_*"):
        if not old.name.startswith(stem):
            old.unlink(missing_ok=True)


ARCHITECTURE = {
    "base_width": "--base-width",
    "depth": "--depth",
    "batch_norm": "--no-batch-norm",
    "dropout": "--dropout",
    "precision": "--precision",
}
"""The settings a checkpoint's weights and optimizer variables depend on (config key: option)."""


def _shown(key: str, value) -> str:
    if key == "batch_norm":
        return "without --no-batch-norm" if value else "with --no-batch-norm"
    return f"{ARCHITECTURE[key]} {value}"


def check_checkpoint(config: TrainConfig, state: dict | None) -> None:
    """Refuse to overwrite a checkpoint without --resume, and to resume one of another model.

    Without this, a forgotten --resume silently replaced the checkpoints with a new run, and a
    --resume with another --base-width failed inside Keras naming no option.
    """
    if state is None:
        return
    path = _state_path(Path(config.out))
    if not config.resume:
        raise UnetError(f"{path}: a checkpoint (epoch {state.get('epoch', '?')}) is already "
                        "there; pass --resume to continue it, or choose another --out")
    saved = state.get("config") or {}
    wanted = asdict(config)
    differ = [key for key in ARCHITECTURE if key in saved and saved[key] != wanted[key]]
    if differ:
        pairs = "; ".join(f"checkpoint {_shown(k, saved[k])}, this run {_shown(k, wanted[k])}"
                          for k in differ)
        raise UnetError(f"{path}: cannot resume another model ({pairs}); pass the checkpoint's "
                        "values, or choose another --out")


def _restore_checkpoint(out: Path, model, optimizer, state: dict) -> None:
    ckpt = _checkpoint_dir(out)
    try:
        model.load_weights(ckpt / state["weights"])
        with np.load(ckpt / state["optimizer"]) as arrays:
            values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    except (OSError, KeyError, ValueError) as exc:
        raise UnetError(f"{ckpt}: cannot restore checkpoint ({exc})") from exc
    if len(values) != len(optimizer.variables):
        raise UnetError(f"{ckpt / state['optimizer']}: {len(values)} optimizer variables, "
                        f"expected {len(optimizer.variables)}")
    for var, value in zip(optimizer.variables, values, strict=True):
        var.assign(value)


def _statistics(config: TrainConfig, train_samples) -> dict:
    stats = streamed_stats(
        [s.image for s in train_samples], read_image, config.quantiles,
        config.percentile_pixels, config.seed,
    )
    if config.normalization == "official":
        if len(stats.mean) != len(OFFICIAL_MEAN):
            raise UnetError(f"{config.data}: official normalisation needs 14 bands")
        mean, std = list(OFFICIAL_MEAN), list(OFFICIAL_STD)
    elif config.normalization == "train":
        mean, std = stats.mean, stats.std
    else:
        raise UnetError(f"--normalization {config.normalization}: expected train or official")
    return {
        "normalization": {"mean": mean, "std": std, "clip": config.clip,
                          "source": config.normalization},
        "percentiles": {"q": stats.q, "values": stats.percentiles,
                        "pixels": stats.percentile_pixels},
    }


def _scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar through core tf.summary.write (tensorboard need not be installed;
    the "scalars" plugin metadata is what tensorboard's own tf.summary.scalar writes)."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=metadata)


def _counts(y, p, w):
    """tp, fp, fn at 0.5 (float32 sums), pixels weighted by their sample's weight."""
    truth = tf.cast(y > 0.5, tf.float32)
    pred = tf.cast(p >= 0.5, tf.float32)
    w = tf.reshape(w, (-1, 1, 1))
    return (
        tf.reduce_sum(truth * pred * w),
        tf.reduce_sum((1.0 - truth) * pred * w),
        tf.reduce_sum(truth * (1.0 - pred) * w),
    )


def _check_counts(config: TrainConfig) -> None:
    """Refuse settings that would write a complete-looking bundle of an untrained model (no
    epoch) or divide by zero (no patch per batch)."""
    for option, value in (("--epochs", config.epochs), ("--batch-size", config.batch_size)):
        if value < 1:
            raise UnetError(f"{option} {value}: must be at least 1")


def train(config: TrainConfig, strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Train (or resume) a U-Net on a Landslide4Sense-layout folder; the chief writes the bundle."""
    strategy = strategy or tf.distribute.get_strategy()
    if config.precision not in PRECISIONS:
        raise UnetError(f"--precision {config.precision}: expected one of {', '.join(PRECISIONS)}")
    _check_counts(config)
    chief = is_chief(strategy)
    out = Path(config.out)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)

    info = read_info(config.data)
    train_samples, val_samples = train_val_split(config.data, config.val_fraction, config.seed)
    state = read_state(out)
    check_checkpoint(config, state)
    tile_size = check_samples(train_samples + val_samples, info.bands, config.tile_size)
    if tile_size % 2**config.depth:
        raise UnetError(f"{config.data}: {tile_size}x{tile_size} px patches, not a multiple of "
                        f"2**depth = {2**config.depth} (--depth {config.depth})")
    stats = {k: state[k] for k in ("normalization", "percentiles")} if state else None
    stats = stats or _statistics(config, train_samples)
    norm = stats["normalization"]
    n_bands = len(norm["mean"])
    if n_bands != len(info.bands):
        raise UnetError(f"{train_samples[0].image}: {n_bands} bands, dataset lists "
                        f"{len(info.bands)}")

    global_batch = config.batch_size
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise UnetError(f"--batch-size {global_batch}: not a multiple of the {replicas} replicas")
    steps = len(train_samples) // global_batch
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    if steps == 0:
        raise UnetError(f"{config.data}: {len(train_samples)} training patches, fewer than one "
                        f"batch of {global_batch}")
    if chief:
        claim_model_dir(out)  # the first write into MODEL_DIR: after every check

    with strategy.scope():
        model = build_unet(n_bands, config.base_width, config.depth, config.batch_norm,
                           config.dropout, sync_batch_norm=replicas > 1)
        optimizer = keras.optimizers.Adam(config.lr)
        if config.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)

    start_epoch, best_f1, best_epoch, best_threshold_, best_metrics = 1, -1.0, 0, 0.5, {}
    history: list[dict] = []
    if state:
        _restore_checkpoint(out, model, optimizer, state)
        start_epoch = state["epoch"] + 1
        best_f1, best_epoch = state["best_f1"], state["best_epoch"]
        best_threshold_, best_metrics = state["threshold"], state["metrics"]
        history = state.get("history", [])

    loss_args = (config.pos_weight, config.bce_weight, config.jaccard_weight, config.smooth)
    bins = config.hist_bins
    scale_loss = config.precision == "mixed_float16"

    def replica_train(x, y, w):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            per_sample = landslide_loss(y, p, *loss_args)
            loss = tf.reduce_sum(per_sample) / global_batch
            scaled = optimizer.scale_loss(loss) if scale_loss else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        p = tf.cast(p[..., 0], tf.float32)
        return (loss, *_counts(y, p, w))

    def replica_eval(x, y, w):
        p = tf.cast(model(x, training=False)[..., 0], tf.float32)
        loss = tf.reduce_sum(landslide_loss(y, p[..., None], *loss_args) * w)
        idx = tf.clip_by_value(tf.cast(tf.floor(p * bins), tf.int32), 0, bins - 1)
        wpix = tf.broadcast_to(tf.reshape(w, (-1, 1, 1)), tf.shape(y))
        idx = tf.reshape(idx, (-1,))
        pos = tf.math.unsorted_segment_sum(tf.reshape(y * wpix, (-1,)), idx, bins)
        neg = tf.math.unsorted_segment_sum(tf.reshape((1.0 - y) * wpix, (-1,)), idx, bins)
        return (loss, *_counts(y, p, w), pos, neg)

    def reduce_all(values):
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    @tf.function
    def train_step(batch):
        return reduce_all(strategy.run(replica_train, args=batch))

    @tf.function
    def eval_step(batch):
        return reduce_all(strategy.run(replica_eval, args=batch))

    val_ds = make_dataset(val_samples, norm["mean"], norm["std"], norm["clip"], global_batch,
                          training=False, pad_to_batch=True)
    # One iterator per run for each split (see unet.pipeline.epochs_dataset): validation
    # repeats its padded batches, exactly val_batches of them per epoch.
    val_batches = -(-len(val_samples) // global_batch)
    val_iter = iter(strategy.experimental_distribute_dataset(val_ds.repeat()))
    epochs = list(range(start_epoch, config.epochs + 1))
    train_iter = iter(strategy.experimental_distribute_dataset(epochs_dataset(
        train_samples, norm["mean"], norm["std"], norm["clip"], global_batch, epochs=epochs,
        steps=steps, augment=config.augment, seed=config.seed))) if epochs else None
    writer = tf.summary.create_file_writer(str(out / "logs")) if chief else None
    rates = []
    figure_failed = False

    for epoch in epochs:
        bar = keras.utils.Progbar(steps, verbose=1 if config.verbose and chief else 0,
                                  stateful_metrics=["loss", "f1", "val_f1"])
        if chief and config.verbose:
            print(f"Epoch {epoch}/{config.epochs}", flush=True)
        t0 = time.perf_counter()
        loss_sum, tp, fp, fn = 0.0, 0.0, 0.0, 0.0
        for step, batch in enumerate(input_batches(train_iter, config.data, steps), start=1):
            loss, btp, bfp, bfn = (float(v) for v in train_step(batch))
            loss_sum, tp, fp, fn = loss_sum + loss, tp + btp, fp + bfp, fn + bfn
            train_scores = scores(tp, fp, fn)
            bar.update(step, [("loss", loss_sum / step), ("f1", train_scores["f1"])],
                       finalize=False)
        train_time = time.perf_counter() - t0
        rate = steps * global_batch / train_time
        if epoch > start_epoch or config.epochs == start_epoch:
            rates.append(rate)

        val_loss, vtp, vfp, vfn = 0.0, 0.0, 0.0, 0.0
        pos_hist, neg_hist = np.zeros(bins), np.zeros(bins)
        for batch in input_batches(val_iter, config.data, val_batches):
            loss, btp, bfp, bfn, pos, neg = eval_step(batch)
            val_loss += float(loss)
            vtp, vfp, vfn = vtp + float(btp), vfp + float(bfp), vfn + float(bfn)
            pos_hist += pos.numpy()
            neg_hist += neg.numpy()
        val_at_half = scores(vtp, vfp, vfn)
        threshold, val_best = best_threshold(pos_hist, neg_hist)
        record = {
            "epoch": epoch,
            "loss": loss_sum / steps,
            **{f"train_{k}": v for k, v in train_scores.items()},
            "val_loss": val_loss / len(val_samples),
            **{f"val_{k}": v for k, v in val_at_half.items()},
            "threshold": threshold,
            **{f"val_best_{k}": v for k, v in val_best.items()},
            "samples_per_second": rate,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        bar.update(steps, [("loss", record["loss"]), ("f1", train_scores["f1"]),
                           ("val_f1", val_best["f1"])], finalize=True)
        if chief and config.verbose:
            print(f"  val: precision {val_best['precision']:.4f} recall {val_best['recall']:.4f} "
                  f"F1 {val_best['f1']:.4f} IoU {val_best['iou']:.4f} at threshold "
                  f"{threshold:.3f} (F1 at 0.5: {val_at_half['f1']:.4f}); "
                  f"{rate:.1f} samples/s", flush=True)
        improved = val_best["f1"] > best_f1
        if improved:
            best_f1, best_epoch, best_threshold_ = val_best["f1"], epoch, threshold
            best_metrics = {**val_best, "epoch": epoch}
        if chief:
            with writer.as_default(step=epoch):
                for key, value in record.items():
                    if key != "epoch":
                        _scalar(key, value, epoch)
            writer.flush()
            ckpt = _checkpoint_dir(out)
            ckpt.mkdir(parents=True, exist_ok=True)
            if improved:
                _save_weights_atomic(model, ckpt / "best.weights.h5")
            _save_checkpoint(out, model, optimizer, {
                "epoch": epoch, "best_f1": best_f1, "best_epoch": best_epoch,
                "threshold": best_threshold_, "metrics": best_metrics, "history": history,
                "config": {k: str(v) if isinstance(v, Path) else v
                           for k, v in asdict(config).items()},
                **stats,
            })
            figure_failed = _draw_learning_curves(out, history, figure_failed)

    _write_worker_weights(config, model)
    if chief:
        # A plain (not synchronised) twin: loadable under any backend, same weights.
        final = build_unet(n_bands, config.base_width, config.depth, config.batch_norm,
                           config.dropout)
        best_path = _checkpoint_dir(out) / "best.weights.h5"
        if best_path.exists():
            final.load_weights(best_path)
        else:
            final.set_weights(model.get_weights())
        bundle = Bundle(
            bands=list(info.bands),
            tile_size=tile_size,
            convention=info.convention,
            normalization=norm,
            threshold=best_threshold_,
            percentiles=stats["percentiles"],
            metrics=best_metrics,
            model={"base_width": config.base_width, "depth": config.depth,
                   "batch_norm": config.batch_norm, "dropout": config.dropout,
                   "bands": n_bands, "precision": config.precision},
            loss={"name": "LandslideLoss", "pos_weight": config.pos_weight,
                  "bce_weight": config.bce_weight, "jaccard_weight": config.jaccard_weight,
                  "smooth": config.smooth},
        )
        save_bundle(out, final, bundle)
        if writer is not None:
            writer.close()
    return TrainResult(best_epoch, best_f1, best_threshold_, best_metrics, history,
                       float(np.mean(rates)) if rates else 0.0)


def _draw_learning_curves(out: Path, history: list[dict], failed_before: bool) -> bool:
    """Redraw MODEL_DIR/training.png from the whole history (a resumed run continues the same
    curves). A figure must never fail training: a failure is logged, once per run, and training
    goes on. Returns whether a drawing has failed in this run."""
    try:
        from unet.figures import draw_training

        draw_training(history, out / TRAINING_FIGURE)
    except Exception as exc:
        if not failed_before:
            log.warning("%s: the learning curves could not be drawn (%s: %s); training goes on",
                        out / TRAINING_FIGURE, type(exc).__name__, exc)
        return True
    return failed_before


def _write_worker_weights(config: TrainConfig, model: keras.Model) -> None:
    """Every process writes its final weights to its own folder (never MODEL_DIR)."""
    if config.worker_dir is not None:
        Path(config.worker_dir).mkdir(parents=True, exist_ok=True)
        _save_weights_atomic(model, Path(config.worker_dir) / "final.weights.h5")
        return
    tmp = tempfile.mkdtemp(prefix="unet-worker-")
    try:
        model.save_weights(Path(tmp) / "final.weights.h5")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
