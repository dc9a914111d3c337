"""python -m jobs.synth {patches,scene,event,baseline} OUT: synthetic Landslide4Sense patches,
whole synthetic scenes, an event (two overlapping granules, before and after), and the
NDVI-and-slope threshold baseline on a patch set.

Bad arguments and unusable paths end with one line on stderr and exit status 2. OUT must be
new, empty or written by jobs.synth before, and only its own earlier outputs are replaced
(``common.owned``): a folder of the user's is refused and left untouched.
"""

import argparse
import sys
import time
from pathlib import Path

from common.errors import LandslideError
from jobs.cli import Parser, count, seed


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (subcommands patches, scene, baseline)."""
    from simulator.patches import DEFAULT_N_TRAIN, DEFAULT_N_VALID
    from simulator.scene import DEFAULT_HEIGHT, DEFAULT_WIDTH
    from simulator.worlds import DEFAULT_WORLD, WORLDS
    from tiler.bands import CONVENTION, CONVENTIONS

    p = Parser(prog="python -m jobs.synth", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    pp = sub.add_parser("patches", help="Landslide4Sense-layout patch set (TrainData, ValidData)")
    pp.add_argument("out", type=Path, help="output folder")
    pp.add_argument("--n-train", type=count, default=DEFAULT_N_TRAIN)
    pp.add_argument("--n-valid", type=count, default=DEFAULT_N_VALID)
    pp.add_argument("--seed", type=seed, default=0)
    sp = sub.add_parser("scene", help="scene.tif + truth.tif, and as band files, DEM and SAFE")
    sp.add_argument("out", type=Path, help="output folder")
    sp.add_argument("--height", type=count, default=DEFAULT_HEIGHT)
    sp.add_argument("--width", type=count, default=DEFAULT_WIDTH)
    sp.add_argument("--seed", type=seed, default=0)
    sp.add_argument("--convention", choices=CONVENTIONS, default=CONVENTION,
                    help="units of scene.tif, written in its LANDSLIDE_CONVENTION tag "
                         "(default %(default)s); l4s-release divides each band by "
                         "simulator.l4s_release.L4S_RELEASE_SCALE (the simulator's declared "
                         "scales, not the real release's). truth.tif, bands/, dem.tif and the "
                         ".SAFE are written unchanged (reflectance DN, metres) either way")
    sp.add_argument("--stack-only", action="store_true",
                    help="write only scene.tif and truth.tif, not bands/, dem.tif and the .SAFE")
    for q in (pp, sp):
        q.add_argument("--workers", type=count, default=None,
                       help="simulation threads (default: CPUs, at most 4)")
        q.add_argument("--world", choices=WORLDS, default=DEFAULT_WORLD,
                       help="which simulated world (default %(default)s); monsoon is "
                            "deliberately different (spectra, more small landslides, other "
                            "confusers), to measure how a model generalises")
    ep = sub.add_parser("event", help="two overlapping L2A granules of one event (with SCL), "
                                      "their pre-event products, a DEM, truths, event.json")
    ep.add_argument("out", type=Path, help="output folder")
    ep.add_argument("--height", type=count, default=1024, help="granule rows (10 m)")
    ep.add_argument("--width", type=count, default=1024, help="granule columns (10 m)")
    ep.add_argument("--overlap", type=count, default=256,
                    help="columns shared by granules A and B (width - overlap must be a "
                         "multiple of 6: the 60 m grids of the two granules coincide)")
    ep.add_argument("--seed", type=seed, default=0)
    bp = sub.add_parser("baseline", help="fit NDVI/slope thresholds on TrainData, score ValidData")
    bp.add_argument("out", type=Path, help="a patch set written by `patches`")
    return p


def _out_dir(parser: argparse.ArgumentParser, out: Path) -> None:
    if out.exists() and not out.is_dir():
        parser.error(f"{out} exists and is not a directory")


def _check_products(out: Path) -> None:
    """Refuse a file of the user's where the products go, before the scene is written."""
    from common import owned
    from simulator import JOB
    from simulator.products import product_outputs

    if out.is_dir():
        owned.claim_folder(out, JOB)
        for name, kind in product_outputs():
            owned.check_replaceable(out / name, JOB, kind)


def _write_products(scene: Path, out: Path) -> None:
    """The same scene as a user would bring it: per-band files, a 4326 DEM, a SAFE product."""
    from simulator.products import write_band_files, write_dem, write_safe

    t = time.perf_counter()
    write_band_files(scene, out / "bands")
    write_dem(scene, out / "dem.tif")
    safe = write_safe(scene, out)
    print(f"wrote {out / 'bands'}/, {out / 'dem.tif'} and {safe} in "
          f"{time.perf_counter() - t:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "patches":
            from simulator.patches import write_patches

            _out_dir(parser, args.out)
            t = time.perf_counter()
            ps = write_patches(args.out, args.n_train, args.n_valid, args.seed, args.workers,
                               world=args.world)
            print(f"wrote {ps.n_train} train + {ps.n_valid} valid patches to {ps.root} "
                  f"in {time.perf_counter() - t:.1f} s")
        elif args.command == "scene":
            from simulator.scene import write_scene

            _out_dir(parser, args.out)
            if not args.stack_only:
                _check_products(args.out)
            t = time.perf_counter()
            info = write_scene(args.out, args.height, args.width, args.seed, args.workers,
                               world=args.world,
                               convention=args.convention)
            print(f"wrote {info.scene} ({args.convention}) and {info.truth} "
                  f"({info.height} x {info.width}, "
                  f"{info.crs}, landslides {100 * info.landslide_fraction:.2f}% of valid pixels, "
                  f"nodata {100 * info.nodata_fraction:.1f}%) in {time.perf_counter() - t:.1f} s")
            if not args.stack_only:
                _write_products(info.scene, args.out)
        elif args.command == "event":
            from simulator.event import write_event

            _out_dir(parser, args.out)
            t = time.perf_counter()
            info = write_event(args.out, seed=args.seed, height=args.height, width=args.width,
                               overlap=args.overlap)
            print(f"wrote {info.manifest} ({info.summary}) in {time.perf_counter() - t:.1f} s")
        else:
            from simulator.baseline import evaluate_threshold, fit_threshold

            if not (args.out / "TrainData").is_dir() or not (args.out / "ValidData").is_dir():
                parser.error(f"{args.out} has no TrainData/ and ValidData/ (run `patches` first)")
            a, b = fit_threshold(args.out / "TrainData")
            s = evaluate_threshold(args.out / "ValidData", a, b)
            print(f"thresholds: NDVI < {a:.2f} and slope >= {b:.1f} deg (fitted on TrainData)")
            print(f"ValidData: precision {s.precision:.3f} recall {s.recall:.3f} "
                  f"F1 {s.f1:.3f} IoU {s.iou:.3f}")
    except (LandslideError, OSError) as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
