"""Score a model bundle: python -m jobs.evaluate --data DIR --model MODEL_DIR [--split ValidData]

The dataset must be of the bundle's radiometric convention and bands (dataset.json, or the
Landslide4Sense release without one), and every patch of the split is checked (shape, bands,
finite values, 0/1 masks) before the model is loaded. ``--figure FILE.png`` also draws the
split's precision-recall curve and its worst, median and best patches (unet/figures.py).
``--json`` and ``--figure`` never replace a file the job did not write (``common.owned``): a
dataset's ``dataset.json`` given as ``--json`` is refused, not overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from common import owned  # noqa: E402
from common.errors import (
    LandslideError,  # noqa: E402
    UnetError,  # noqa: E402
)
from jobs.cli import Parser, count, path_arg, probability, report_error  # noqa: E402
from jobs.train import run_main  # noqa: E402  (no TensorFlow import)
from unet.quiet import import_tensorflow  # noqa: E402

PROG = "jobs.evaluate"


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=path_arg)
    p.add_argument("--model", required=True, type=path_arg, help="MODEL_DIR with the bundle")
    p.add_argument("--split", default="ValidData")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the scores here (never over a file the job did not write)")
    p.add_argument("--threshold", type=probability, default=None,
                   help="decision threshold, between 0 and 1 (default: the bundle's)")
    p.add_argument("--batch-size", type=count, default=16)
    p.add_argument("--figure", type=Path, default=None,
                   help="also draw the precision-recall curve and the worst, median and best "
                        "patches into this PNG")
    args = p.parse_args(argv)
    args.data, args.model = Path(args.data), Path(args.model)
    try:
        check_outputs(args.json, args.figure)  # before TensorFlow loads
        import_tensorflow()
        from unet.bundle import load_bundle, read_bundle
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
            owned.write_text(args.json, json.dumps(result, indent=2) + "\n", PROG)
        if args.figure is not None:
            with owned.output_file(args.figure, PROG) as tmp:
                write_evaluation_figure(tmp, model, bundle, samples, split, args.split)
            print(f"figure: {args.figure}")
    except LandslideError as exc:
        return report_error(PROG, exc)
    return 0


def check_outputs(json_path: Path | None, figure: Path | None) -> None:
    """Refuse --json and --figure paths that cannot be written or are not the job's own."""
    if json_path is not None:
        owned.check_replaceable(json_path, PROG)
    if figure is not None:
        check_figure_path(figure)
        owned.check_replaceable(figure, PROG)
    if json_path is not None and figure is not None and json_path.resolve() == figure.resolve():
        raise UnetError(f"{figure}: --json and --figure name the same file")


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
