"""The built-in demo, end to end on data the project makes itself:

synthesise training patches, train a small U-Net briefly, synthesise a scene (not a multiple of
128, with a nodata edge), map its landslides with `jobs.infer` on the embedded LocalCluster, and
score the map against the scene's ground truth; then an event: two overlapping post-event
granules (SAFE products with their cloud classification) and their pre-event products, mapped in
one submission with the pre-event change evidence, each granule scored against its truth and
the event's inventory counted. Each stage is the real job, run as a user would
(`python -m jobs.NAME`); a stage whose output already exists is not run again. The three figures
(learning curves, evaluation on the validation split, the scene's summary) end up in the workdir.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import owned
from jobs.cli import Parser, count
from jobs.cli import seed as seed_number
from products.compare import confusion_counts
from unet.metrics import scores


def _job(*args: str) -> None:
    cmd = [sys.executable, "-m", *args]
    print("\n$ python -m " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m jobs.demo", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="demo-run", help="where everything is written")
    p.add_argument("--n-train", type=count, default=600)
    p.add_argument("--n-valid", type=count, default=150)
    p.add_argument("--epochs", type=count, default=4)
    p.add_argument("--height", type=count, default=1500)
    p.add_argument("--width", type=count, default=1300)
    p.add_argument("--seed", type=seed_number, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.workdir)
    patches, model, scene, out = (work / n for n in ("patches", "model", "scene", "map"))
    t0 = time.perf_counter()
    if not (patches / "dataset.json").exists():
        _job("jobs.synth", "patches", str(patches), "--n-train", str(args.n_train),
             "--n-valid", str(args.n_valid), "--seed", str(args.seed))
    if not (model / "bundle.json").exists():  # resumes a training that was interrupted
        resume = ["--resume"] if (model / "checkpoints" / "state.json").exists() else []
        _job("jobs.train", "--data", str(patches), "--out", str(model), "--strategy", "default",
             "--epochs", str(args.epochs), "--seed", str(args.seed), *resume)
    if not (scene / "truth.tif").exists():
        _job("jobs.synth", "scene", str(scene), "--height", str(args.height),
             "--width", str(args.width), "--seed", str(args.seed + 1))
    evaluation = work / "evaluation.png"
    _job("jobs.evaluate", "--data", str(patches), "--model", str(model), "--figure",
         str(evaluation))
    _job("jobs.infer", str(scene / "scene.tif"), "--model", str(model), "--out", str(out),
         "--figure")
    result = _score(out / "mask.tif", scene / "truth.tif")
    result["event"] = _event(work, model, args.seed)
    owned.write_text(work / "demo.json", json.dumps(result, indent=2), "jobs.demo")
    print(f"\nDemo done in {time.perf_counter() - t0:.0f} s. Mask against truth.tif: "
          f"F1 {result['f1']:.3f}, IoU {result['iou']:.3f}, precision {result['precision']:.3f}, "
          f"recall {result['recall']:.3f}")
    for name in ("probability.tif", "mask.tif", "landslides.gpkg", "preview.png", "report.json"):
        print(f"  {out / name}")
    e = result["event"]
    print(f"Event (two granules, pre-event change, clouds masked): {e['inventory']} landslides "
          f"in {work / 'event-map' / 'inventory.gpkg'}; " + ", ".join(
              f"granule {g}: F1 {v['f1']:.3f}" for g, v in e["granules"].items()))
    print("Figures:")
    for figure in (model / "training.png", evaluation, out / "summary.png"):
        print(f"  {figure}" if figure.exists() else f"  {figure} (missing)")
    return 0


def _score(mask: Path, truth: Path) -> dict:
    return scores(**{k: v for k, v in confusion_counts(mask, truth).items() if k != "tn"})


def _event(work: Path, model: Path, seed: int) -> dict:
    """The event path: jobs.synth event, then one jobs.infer over both post-event granules."""
    from products.inventory import LAYER
    from simulator.event import read_event

    folder, out = work / "event", work / "event-map"
    if not (folder / "event.json").exists():
        _job("jobs.synth", "event", str(folder), "--height", "768", "--width", "768",
             "--overlap", "192", "--seed", str(seed + 2))
    event = read_event(folder)
    granules = event["granules"]
    _job("jobs.infer", *(g["post"]["product"] for g in granules.values()), "--pre", str(folder),
         "--require-vegetation-loss", "0.02", "--dem", event["dem"], "--model", str(model),
         "--out", str(out))
    import pyogrio

    return {"inventory": pyogrio.read_info(out / "inventory.gpkg", layer=LAYER)["features"],
            "granules": {name: _score(out / Path(g["post"]["product"]).stem / "mask.tif",
                                      Path(g["truth"])) for name, g in granules.items()}}


if __name__ == "__main__":
    sys.exit(main())
