"""python -m jobs.tile INPUT [--dem DEM] --out STORE.zarr [--cluster cluster.yaml] [--mask FILE]

Tile a stacked 14-band GeoTIFF, a folder of per-band rasters, or a Sentinel-2 SAFE product
into the Zarr tile store of DESIGN.md. Exit 0 on success (or when the store is already
complete), 2 on bad input, a bad store or a bad cluster.yaml (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.errors import StoreError
from jobs.cli import Parser, add_scene_options, path_arg, run_job
from mapping.cluster import load_cluster_config, open_client
from mapping.lock import exclusive, store_lock
from tiler.run import plan_store, run_plan, tile_input_summary
from tiler.sources import resolve_input

PROG = "jobs.tile"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.splitlines()[2])
    p.add_argument("input", type=path_arg,
                   help="stacked GeoTIFF, folder of band files, or .SAFE folder")
    p.add_argument("--out", required=True, help="the tile store to write (STORE.zarr)")
    p.add_argument("--cluster", help="cluster.yaml (default: an embedded local cluster)")
    add_scene_options(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a store that was made from another input")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def tile(args: argparse.Namespace) -> int:
    config = load_cluster_config(args.cluster)
    # Everything that can be refused is refused here, before any cluster starts.
    spec = resolve_input(args.input, args.dem, offset=args.offset,
                         quantification=args.quantification, convention=args.convention,
                         mask=args.mask, mask_values=args.mask_values)
    if spec.mask_note:
        print(f"python -m {PROG}: note: {spec.mask_note}", file=sys.stderr, flush=True)
    store = Path(args.out).resolve()
    if not store.parent.is_dir():
        raise StoreError(f"{store.parent}: the folder of --out does not exist")
    with exclusive(store_lock(store), store):
        plan = plan_store(spec, store, overwrite=args.overwrite)
        if plan.already_complete:
            result = run_plan(plan, client=None)
        else:
            with open_client(config) as client:
                print(f"dask dashboard: {client.dashboard_link}", flush=True)
                result = run_plan(plan, client, progress=not args.no_progress)
    print(tile_input_summary(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    return run_job(PROG, lambda: tile(args))


if __name__ == "__main__":
    sys.exit(main())
