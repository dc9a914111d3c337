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

from common.errors import (
    LandslideError,  # noqa: E402  (no TensorFlow import yet)
    UnetError,  # noqa: E402
)
from jobs.cli import (  # noqa: E402
    Parser,
    count,
    fraction,
    non_negative,
    path_arg,
    positive,
    report_error,
    seed,
)
from unet.config import PRECISIONS, default  # noqa: E402
from unet.model_dir import JOB, check_model_dir  # noqa: E402  (no TensorFlow import)
from unet.quiet import import_tensorflow  # noqa: E402

STRATEGIES = ("default", "mirrored", "multiworker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every default is `unet.config.TrainConfig`'s."""
    d, shown = default, "default %(default)s"
    p = Parser(prog=f"python -m {JOB}", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=path_arg, help="Landslide4Sense-layout folder")
    p.add_argument("--out", required=True, type=Path,
                   help="MODEL_DIR (bundle, checkpoints, logs): new, empty, or an earlier "
                        "MODEL_DIR of jobs.train; a folder of other files is refused")
    p.add_argument("--strategy", choices=STRATEGIES, default="default")
    p.add_argument("--epochs", type=count, default=d("epochs"), help=shown)
    p.add_argument("--batch-size", type=count, default=d("batch_size"),
                   help="GLOBAL batch size (default %(default)s)")
    p.add_argument("--replicas", type=count, default=None,
                   help="mirrored: number of devices (default: all GPUs, or 2 CPU replicas)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--val-fraction", type=fraction, default=d("val_fraction"),
                   help="share of TrainData held out when ValidData has no masks "
                        "(default %(default)s)")
    p.add_argument("--normalization", choices=("train", "official"), default=d("normalization"))
    p.add_argument("--base-width", type=count, default=d("base_width"),
                   help="filters of the first level, doubled at each level (default %(default)s)")
    p.add_argument("--depth", type=count, default=d("depth"), help=shown)
    p.add_argument("--dropout", type=fraction, default=d("dropout"), help=shown)
    p.add_argument("--no-batch-norm", action="store_true")
    p.add_argument("--lr", type=positive, default=d("lr"), help=shown)
    p.add_argument("--pos-weight", type=positive, default=d("pos_weight"),
                   help="weight of landslide pixels in the cross-entropy (default %(default)s)")
    p.add_argument("--bce-weight", type=non_negative, default=d("bce_weight"), help=shown)
    p.add_argument("--jaccard-weight", type=non_negative, default=d("jaccard_weight"),
                   help=shown)
    p.add_argument("--seed", type=seed, default=d("seed"))
    p.add_argument("--precision", choices=PRECISIONS, default=d("precision"))
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--steps-per-epoch", type=count, default=None, help="cap (benchmarks)")
    p.add_argument("--threads", type=count, default=None,
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
    tf = import_tensorflow()

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


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def _on_this_machine(address: str) -> bool:
    import socket

    host = address.rsplit(":", 1)[0]
    return host in LOCAL_HOSTS or host.startswith("127.") or host in (socket.gethostname(),
                                                                       socket.getfqdn())


def gain_note(name: str, cpu_replicas: int = 0, environ=os.environ) -> str | None:
    """One line saying that the strategy cannot train faster than `default` on this machine,
    or None. CPU replicas, like workers that all run on one machine, share the same cores:
    they split each batch, not the work (measured in BENCHMARKS.md: at best as fast as one)."""
    cores = len(os.sched_getaffinity(0))
    if name == "mirrored" and cpu_replicas > 1:
        return (f"{cpu_replicas} CPU replicas share this machine's {cores} cores: "
                "--strategy mirrored gains nothing over --strategy default without GPUs")
    if name == "multiworker":
        workers = [a for addrs in json.loads(environ["TF_CONFIG"])["cluster"].values()
                   for a in addrs]
        if len(workers) > 1 and all(_on_this_machine(a) for a in workers):
            return (f"the {len(workers)} workers of TF_CONFIG all run on this machine and "
                    f"share its {cores} cores: --strategy multiworker gains nothing over "
                    "--strategy default here (it pays for the gradients' exchange)")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data = Path(args.data)
    try:
        check_model_dir(args.out)  # before TensorFlow loads
        if args.strategy == "multiworker":
            check_tf_config()  # before TensorFlow loads: a clear error, not a hang
        tf = import_tensorflow()

        if args.threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(2)
        strategy = make_strategy(args.strategy, args.replicas)
        cpu_replicas = (strategy.num_replicas_in_sync
                        if args.strategy == "mirrored" and not tf.config.list_physical_devices(
                            "GPU") else 0)
        note = gain_note(args.strategy, cpu_replicas)
        if note:
            print(f"python -m jobs.train: note: {note}", flush=True)

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
        return report_error(JOB, exc)
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
