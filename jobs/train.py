"""Train the U-Net: python -m jobs.train --data DIR --out MODEL_DIR --strategy STRATEGY

A thin command line over unet.training.train. Errors of the unet package come out as one line
on stderr naming the file or option at fault, exit status 2. Every patch is checked before the
first training step; a failure later, inside the tf.data pipeline, still ends the process (see
`exit_now`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from common.errors import LandslideError  # noqa: E402  (no TensorFlow import yet)
from jobs.cli import report_error  # noqa: E402
from unet.errors import UnetError  # noqa: E402

STRATEGIES = ("default", "mirrored", "multiworker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="Landslide4Sense-layout folder")
    p.add_argument("--out", required=True, type=Path, help="MODEL_DIR (bundle, checkpoints, logs)")
    p.add_argument("--strategy", choices=STRATEGIES, default="default")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16, help="GLOBAL batch size")
    p.add_argument("--replicas", type=int, default=None,
                   help="mirrored: number of devices (default: all GPUs, or 2 CPU replicas)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of TrainData held out when ValidData has no masks")
    p.add_argument("--normalization", choices=("train", "official"), default="train")
    p.add_argument("--base-width", type=int, default=8)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--no-batch-norm", action="store_true")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--pos-weight", type=float, default=3.0)
    p.add_argument("--bce-weight", type=float, default=1.0)
    p.add_argument("--jaccard-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"),
                   default="float32")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap (benchmarks)")
    p.add_argument("--threads", type=int, default=None,
                   help="TensorFlow intra-op threads (inter-op: 2); default: TensorFlow's")
    p.add_argument("--worker-dir", type=Path, default=None,
                   help="where this process writes final.weights.h5 (default: a deleted tempdir)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def check_tf_config(environ=os.environ) -> dict:
    """The parsed TF_CONFIG, or UnetError saying what is wrong with it."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise UnetError("TF_CONFIG: not set (--strategy multiworker needs the cluster and this "
                        "process's task, e.g. {\"cluster\": {\"worker\": [\"host:port\", ...]}, "
                        "\"task\": {\"type\": \"worker\", \"index\": 0}})")
    try:
        cfg = json.loads(raw)
        cluster, task = cfg["cluster"], cfg["task"]
        jobs = {k: list(v) for k, v in cluster.items()}
        kind, index = task["type"], int(task["index"])
        if kind not in jobs or not 0 <= index < len(jobs[kind]):
            raise ValueError(f"task {kind}:{index} is not in the cluster")
        if not jobs.get("worker") and not jobs.get("chief"):
            raise ValueError("the cluster lists no worker")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnetError(f"TF_CONFIG: malformed ({exc})") from exc
    return cfg


def make_strategy(name: str, replicas: int | None):
    """Build the tf.distribute strategy; must run before any other TensorFlow op."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        gpus = gpus[: replicas or len(gpus)]
        return tf.distribute.MirroredStrategy([g.name.replace("physical_device:", "")
                                               for g in gpus])
    n = replicas or 2
    if n < 1:
        raise UnetError(f"--replicas {n}: must be at least 1")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.strategy == "multiworker":
            check_tf_config()  # before TensorFlow loads: a clear error, not a hang
        import tensorflow as tf

        if args.threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(2)
        strategy = make_strategy(args.strategy, args.replicas)

        from unet.training import TrainConfig, train

        config = TrainConfig(
            data=args.data, out=args.out, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, val_fraction=args.val_fraction,
            normalization=args.normalization, base_width=args.base_width, depth=args.depth,
            batch_norm=not args.no_batch_norm, dropout=args.dropout,
            pos_weight=args.pos_weight, bce_weight=args.bce_weight,
            jaccard_weight=args.jaccard_weight, precision=args.precision, resume=args.resume,
            augment=not args.no_augment, steps_per_epoch=args.steps_per_epoch,
            worker_dir=args.worker_dir, verbose=not args.quiet,
        )
        result = train(config, strategy)
    except LandslideError as exc:
        return report_error("jobs.train", exc)
    if not args.quiet:
        m = result.metrics
        print(f"best epoch {result.best_epoch}: F1 {m.get('f1', 0):.4f} precision "
              f"{m.get('precision', 0):.4f} recall {m.get('recall', 0):.4f} IoU "
              f"{m.get('iou', 0):.4f} at threshold {result.threshold:.3f}; "
              f"{result.samples_per_second:.1f} samples/s; "
              f"strategy {args.strategy} ({strategy.num_replicas_in_sync} replicas)")
    return 0


def exit_now(code: int) -> None:
    """Flush and leave the process at once, skipping interpreter shutdown.

    After a failure TensorFlow's input threads (tf.data readers running Python through
    numpy_function, a prefetch buffer, the collective ops of a multi-worker run) may still be
    alive; an ordinary exit then waits on them and can hang for ever after the error is printed.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_main(job_main: Callable[[], int]) -> None:
    """The `__main__` of a job that runs tf.data: success exits normally (writers close); an
    error (exit 2) or an unexpected exception (traceback, exit 1) ends the process now."""
    try:
        code = job_main()
    except SystemExit:  # argparse: --help and usage errors, before TensorFlow starts
        raise
    except BaseException:
        traceback.print_exc()
        exit_now(1)
    if code:
        exit_now(code)
    sys.exit(0)


if __name__ == "__main__":
    run_main(main)
