"""Score a model bundle: python -m jobs.evaluate --data DIR --model MODEL_DIR [--split ValidData]

The dataset must be of the bundle's radiometric convention and bands (dataset.json, or the
Landslide4Sense release without one), and every patch of the split is checked (shape, bands,
finite values, 0/1 masks) before the model is loaded. ``--figure FILE.png`` also draws the
split's precision-recall curve and its worst, median and best patches (unet/figures.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from common.errors import LandslideError  # noqa: E402
from jobs.cli import report_error  # noqa: E402
from jobs.train import run_main  # noqa: E402  (no TensorFlow import)
from unet.errors import UnetError  # noqa: E402
from unet.quiet import import_tensorflow  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.evaluate",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--model", required=True, type=Path, help="MODEL_DIR with the bundle")
    p.add_argument("--split", default="ValidData")
    p.add_argument("--json", type=Path, default=None, help="also write the scores here")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold (default: the bundle's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--figure", type=Path, default=None,
                   help="also draw the precision-recall curve and the worst, median and best "
                        "patches into this PNG")
    args = p.parse_args(argv)
    try:
        if args.figure is not None:
            check_figure_path(args.figure)  # before TensorFlow loads
        import_tensorflow()
        from unet.bundle import load_bundle, read_bundle, write_json_atomic
        from unet.dataset import check_samples, list_split, read_info
        from unet.evaluation import check_dataset_matches, score_split, write_evaluation_figure

        meta = read_bundle(args.model)
        check_dataset_matches(meta, read_info(args.data), args.model)
        samples = list_split(args.data, args.split)
        check_samples(samples, tuple(meta.bands))
        model, bundle = load_bundle(args.model)
        split = score_split(model, bundle, samples, args.threshold, args.batch_size)
        result = {"split": args.split, "model_id": bundle.model_id, **split.summary()}
        print(f"{'split':<10} {'tiles':>6} {'threshold':>9} {'precision':>9} {'recall':>9} "
              f"{'F1':>9} {'IoU':>9}")
        print(f"{args.split:<10} {result['tiles']:>6} {result['threshold']:>9.3f} "
              f"{result['precision']:>9.4f} {result['recall']:>9.4f} {result['f1']:>9.4f} "
              f"{result['iou']:>9.4f}")
        if args.json:
            write_json_atomic(args.json, result)
        if args.figure is not None:
            write_evaluation_figure(args.figure, model, bundle, samples, split, args.split)
            print(f"figure: {args.figure}")
    except LandslideError as exc:
        return report_error("jobs.evaluate", exc)
    return 0


def check_figure_path(path: Path) -> None:
    """Refuse a --figure that cannot be written, before the model is loaded."""
    if path.suffix.lower() != ".png":
        raise UnetError(f"{path}: --figure must name a .png file")
    if path.is_dir():
        raise UnetError(f"{path}: --figure is a folder; name a .png file")
    folder = path.parent
    if not folder.is_dir():
        raise UnetError(f"{folder}: the folder of --figure does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnetError(f"{folder}: the folder of --figure is not writable")


if __name__ == "__main__":
    run_main(main)
