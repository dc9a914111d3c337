"""python -m jobs.tile INPUT [--dem DEM] --out STORE.zarr [--cluster cluster.yaml]

Tile a stacked 14-band GeoTIFF, a folder of per-band rasters, or a Sentinel-2 SAFE product
into the Zarr tile store of DESIGN.md. Exit 0 on success (or when the store is already
complete), 2 on bad input, a bad store or a bad cluster.yaml (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys

from common.errors import LandslideError
from jobs.cli import report_error
from jobs.cluster import load_cluster_config, open_client
from tiler.run import plan_store, run_plan, tile_input_summary
from tiler.sources import DEFAULT_QUANTIFICATION, resolve_input


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.tile", description=__doc__.splitlines()[2])
    p.add_argument("input", help="stacked GeoTIFF, folder of band files, or .SAFE folder")
    p.add_argument("--dem", help="DEM raster (any CRS) for band-folder and SAFE input")
    p.add_argument("--out", required=True, help="the tile store to write (STORE.zarr)")
    p.add_argument("--cluster", help="cluster.yaml (default: an embedded local cluster)")
    p.add_argument("--offset", type=float, default=0.0,
                   help="DN offset for integer band files: (DN + offset) / quantification")
    p.add_argument("--quantification", type=float, default=DEFAULT_QUANTIFICATION,
                   help="DN scale for integer band files (default 10000)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a store that was made from another input")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        config = load_cluster_config(args.cluster)
        # Everything that can be refused is refused here, before any cluster starts.
        spec = resolve_input(args.input, args.dem, offset=args.offset,
                             quantification=args.quantification)
        plan = plan_store(spec, args.out, overwrite=args.overwrite)
        if plan.already_complete:
            result = run_plan(plan, client=None)
        else:
            with open_client(config) as client:
                print(f"dask dashboard: {client.dashboard_link}", flush=True)
                result = run_plan(plan, client, progress=not args.no_progress)
    except LandslideError as exc:
        return report_error("jobs.tile", exc)
    print(tile_input_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
