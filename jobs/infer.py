"""python -m jobs.infer: a whole scene in, a georeferenced landslide map out.

A thin CLI over ``mapping.scene.map_scene``: the scene is tiled into OUT/tiles.zarr and every
1024 px block is predicted (with a halo of context, so there are no seams) on the Dask cluster of
cluster.yaml as soon as its neighbours are tiled; the outputs (COGs, polygons, preview,
report.json) are written under temporary names in OUT and renamed at the end. A re-run after a
crash recomputes only the blocks that were not written.
"""

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from jobs.cli import (
    Parser,
    add_scene_options,
    bounded_int,
    non_negative,
    path_arg,
    probability,
    run_job,
)
from mapping.event import expand_inputs, map_event, match_pre
from mapping.outputs import OUTPUTS
from mapping.scene import HALO, MapRequest, map_scene
from tiler.bands import BLOCK

PROG = "jobs.infer"
__all__ = ["OUTPUTS", "main", "parse_args", "run"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    p.add_argument("input", nargs="+", type=path_arg,
                   help="a scene (stacked GeoTIFF, band folder, .SAFE) or a tile store; or "
                        "several scenes of one event: paths, a folder of .SAFE products, or a "
                        "text file with one path per line (outputs in OUT/<scene>/, and "
                        "OUT/inventory.gpkg, OUT/probability.vrt)")
    p.add_argument("--model", required=True, type=path_arg,
                   help="model bundle directory (from jobs.train)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--cluster", help="cluster.yaml (default: an embedded LocalCluster)")
    add_scene_options(p)
    p.add_argument("--threshold", type=probability,
                   help="probability threshold, between 0 and 1 (default: the bundle's)")
    p.add_argument("--min-area", type=non_negative, default=200.0,
                   help="drop landslides and fill holes smaller than this many m2 (default 200)")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument("--harmonize", action="store_true",
                   help="match the scene's band percentiles to the training data's")
    p.add_argument("--figure", action="store_true",
                   help="also write summary.png: the preview, the landslides' areas and the "
                        "probabilities with the threshold")
    p.add_argument("--vector-format", choices=("gpkg", "geojson"), default="gpkg",
                   help="geojson: also landslides.geojson (WGS 84, for web maps)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT/tiles.zarr when it was made from another input")
    p.add_argument("--crs", help="the CRS of an event's inventory (default: the first scene's)")
    p.add_argument("--pre", type=path_arg,
                   help="the pre-event scene (an event: a folder of .SAFE products, "
                   "matched by granule id): change.tif and each landslide's rdNDVI")
    p.add_argument("--require-vegetation-loss", type=non_negative, metavar="X",
                   help="with --pre: keep only landslides that lost vegetation (mean NDVI "
                        "before >= 0.2 and mean rdNDVI <= -X), and those with no usable "
                        "pre-event pixel (change_evidence 'none', counted in report.json)")
    p.add_argument("--halo", type=bounded_int(0, BLOCK // 2), default=HALO,
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """The whole job for parsed arguments; returns the report (the event's, for several
    scenes)."""
    scenes, event = expand_inputs(args.input)
    values = {f.name: getattr(args, f.name) for f in fields(MapRequest) if f.name != "input"}
    if event:
        return map_event(MapRequest(input="", **values), scenes, args.crs)
    values["pre"] = match_pre(scenes[0], args.pre)
    return map_scene(MapRequest(input=scenes[0], **values))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_job(PROG, lambda: _summary(args, run(args)))


def _summary(args: argparse.Namespace, report: dict) -> int:
    if report.get("event"):
        return _event_summary(args, report)
    t = report["timings"]
    print(f"{report['landslides']} landslides, {report['landslide_area_m2'] / 1e4:.2f} ha, in "
          f"{t['total_s']:.0f} s ({report['tiles_predicted']} tiles predicted) -> "
          f"{Path(args.out) / 'mask.tif'}, landslides.gpkg, preview.png")
    return 0


def _event_summary(args: argparse.Namespace, report: dict) -> int:
    """One line per scene, one for the event; exit status 2 when a scene failed."""
    for s in report["scenes"]:
        print(f"{s['name']}: " + (f"failed: {s['error']}" if s["status"] == "failed" else
                                  f"{s['landslides']} landslides ({s['status']})"))
    inv = report["inventory"] or {"landslides": 0, "crs": "-"}
    print(f"event: {inv['landslides']} landslides in {Path(args.out) / 'inventory.gpkg'} "
          f"({inv['crs']}), {report['failed']} of {len(report['scenes'])} scenes failed")
    return 2 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
