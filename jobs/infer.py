"""python -m jobs.infer: a whole scene in, a georeferenced landslide map out.

Stages: tile the input (unless it already is a tile store), predict every 1024 px block of the
store on the Dask cluster of cluster.yaml (the model loaded once per worker, each block with a
halo of context so there are no seams), then stitch the probabilities into COGs, polygons and a
preview. Probabilities are written into the store as blocks finish, so a re-run after a crash
recomputes only the blocks that were not written. Outputs are written under temporary names in
OUT_DIR and renamed at the end.
"""

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from distributed import Client, as_completed
from rasterio.crs import CRS
from tqdm import tqdm

from common.errors import LandslideError
from jobs.cli import Parser, add_scene_options, non_negative, probability, run_job
from jobs.cluster import MODEL_SLOT, ClusterConfig, load_cluster_config, open_client
from jobs.lock import exclusive, store_lock
from jobs.outputs import (
    OUTPUTS,
    check_outputs_owned,
    clear_earlier_outputs,
    prepare_out,
    publish,
    refuse_outputs_over_inputs,
    work_folder,
)
from tiler.bands import BANDS, BLOCK
from tiler.grid import Grid
from tiler.gridding import check_metric_store_grid, crs_name
from tiler.polygons import Landslides, burn_mask, landslides_from, write_polygons
from tiler.predictions import complete_grid, prepare_predictions
from tiler.preview import write_preview
from tiler.rasters import to_cog, write_probability, write_threshold
from tiler.run import Plan, TileResult, plan_store, run_plan
from tiler.sources import resolve_input
from tiler.stats import band_percentiles, harmonization
from tiler.store import is_store, store_attrs, store_grid
from tiler.summary_figure import write_summary_figure
from unet.bundle import Bundle, check_model_file, read_bundle
from unet.predict import BlockJob, BlockTimes, block_context, predict_block, preload

PROG = "jobs.infer"
HALO = 32
STORE = "tiles.zarr"
LOCK = ".lock"


class InferError(LandslideError):
    """A scene and a model that do not go together."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    p.add_argument("input", help="a scene (stacked GeoTIFF, band folder, .SAFE) or a tile store")
    p.add_argument("--model", required=True, help="model bundle directory (from jobs.train)")
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT/tiles.zarr when it was made from another input")
    p.add_argument("--halo", type=halo, default=HALO, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def halo(text: str) -> int:
    """argparse type: a halo of 0 .. 512 px (half a block)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= BLOCK // 2:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {BLOCK // 2}")
    return value


def check_compatible(where: str | Path, bands: list[str], convention: str, bundle: Bundle,
                     harmonize: bool, bundle_dir: str | Path = "MODEL") -> None:
    """Refuse input whose bands or radiometric convention are not the model's."""
    if list(bands) != list(bundle.bands):
        raise InferError(f"{where}: bands {list(bands)} do not match the model's "
                         f"{list(bundle.bands)}")
    if convention != bundle.convention and not harmonize:
        raise InferError(
            f"{where}: holds radiometric convention {convention!r}, the model was trained on "
            f"{bundle.convention!r}: if the scene already is in {bundle.convention!r}, pass "
            f"--convention {bundle.convention}; else --harmonize maps the scene's band "
            f"percentiles onto the training data's (an approximation)")
    q = bundle.percentiles.get("q") or []
    if harmonize and not (bundle.percentiles.get("values") and 2 in q and 98 in q):
        raise InferError(f"{Path(bundle_dir) / 'bundle.json'}: has no training percentiles "
                         f"(2nd and 98th), so --harmonize cannot be applied")


def block_job(store: Path, grid: Grid, bundle: Bundle, args: argparse.Namespace,
              threads: int | None) -> BlockJob:
    scale = offset = None
    if args.harmonize:
        q = list(bundle.percentiles["q"])
        train = np.asarray(bundle.percentiles["values"], dtype=np.float64).T  # (len(q), bands)
        scene = band_percentiles(store, grid, q)
        scale, offset = harmonization(scene, train, q.index(2), q.index(98))
        scale, offset = tuple(map(float, scale)), tuple(map(float, offset))
    return BlockJob(store=str(store), model_dir=str(Path(args.model).resolve()), halo=args.halo,
                    tta=args.tta, intra_op_threads=threads, scale=scale, offset=offset,
                    model_id=bundle.model_id)


def prediction_identity(job: BlockJob, convention: str) -> dict:
    """Everything that changes the probabilities: the key of the predictions kept in a store."""
    return {"model_id": job.model_id, "tta": job.tta, "halo": job.halo,
            "convention": convention, "scale": job.scale, "offset": job.offset}


def model_resources(client: Client) -> dict[str, int] | None:
    """{MODEL: 1} (each block takes one unit) when every worker declares that resource, else
    None (no restriction)."""
    workers = client.scheduler_info()["workers"].values()
    if workers and all(MODEL_SLOT in w.get("resources", {}) for w in workers):
        return {MODEL_SLOT: 1}
    return None


def preload_models(client: Client, model_dir: str, threads: int | None,
                   model_id: str) -> list:
    """One task per worker that imports TensorFlow and loads the model while the scene is being
    tiled, so the first blocks do not wait for it (workers that join later load on first use)."""
    path = str(Path(model_dir).resolve())
    return [client.submit(preload, path, threads, model_id, workers=[w],
                          allow_other_workers=False, pure=False)
            for w in client.scheduler_info()["workers"]]


def preload_seconds(client: Client, loading: list) -> float:
    """Seconds the finished preloads took. Preloading is only a head start: a preload pinned to
    a worker that died can never run, so the unfinished ones are cancelled, never waited for
    (the block tasks load the model themselves and report any error of the bundle)."""
    client.cancel([f for f in loading if f.status != "finished"])
    return sum(f.result() for f in loading if f.status == "finished")


def predict_store(client: Client, job: BlockJob, blocks: list[tuple[int, int]]) -> BlockTimes:
    """Map predict_block over the blocks still to do; returns the tiles and the summed times."""
    futures = client.map(predict_block, [job] * len(blocks), *zip(*blocks, strict=True),
                         pure=False, resources=model_resources(client)) if blocks else []
    total = BlockTimes()
    with tqdm(total=len(blocks), unit="block", desc="infer", file=sys.stderr) as bar:
        for future in as_completed(futures):
            total += future.result()
            bar.update(1)
            bar.set_postfix(tiles=total.tiles)
    return total


def stitch(store: Path, grid: Grid, work: Path, threshold: float, min_area: float) -> Landslides:
    """Probabilities out of the store, thresholded, polygonised and burnt back as the mask."""
    write_probability(store, grid, work / "probability.raw.tif")
    write_threshold(store, grid, threshold, work / "threshold.raw.tif")
    found = landslides_from(work / "threshold.raw.tif", work / "probability.raw.tif", min_area)
    burn_mask(store, grid, found.polygons, work / "mask.raw.tif")
    return found


def write_outputs(store: Path, grid: Grid, work: Path, found: Landslides) -> None:
    """The user-facing files, still under the temporary folder: COGs, polygons, preview."""
    to_cog(work / "probability.raw.tif", work / "probability.tif", "AVERAGE")
    to_cog(work / "mask.raw.tif", work / "mask.tif", "NEAREST")
    write_polygons(work / "landslides.gpkg", found, grid.crs_wkt)
    write_preview(store, grid, found.polygons, work / "preview.png")


class Stages:
    """Wall time per stage, each measured from the end of the one before: the job's profile."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[f"{stage}_s"] = now - self.last
        self.last = now

    def timings(self) -> dict[str, float]:
        return {**self.seconds, "total_s": self.last - self.start}


def run(args: argparse.Namespace) -> dict:
    """The whole job; refuses (LandslideError) everything it can before any cluster starts."""
    stages = Stages()
    bundle = read_bundle(args.model)
    check_model_file(args.model)
    config = load_cluster_config(args.cluster)
    out = prepare_out(Path(args.out))
    refuse_outputs_over_inputs(out, {"INPUT": args.input, "--dem": args.dem,
                                     "--model": args.model, "--cluster": args.cluster})
    store = Path(args.input).resolve() if is_store(args.input) else out / STORE
    with exclusive(out / LOCK, out), exclusive(store_lock(store), store):
        check_outputs_owned(out)
        plan, convention = _plan(args, store)
        check_compatible(args.input, _store_bands(store, plan), convention, bundle,
                         args.harmonize, args.model)
        clear_earlier_outputs(out)
        stages.done("setup")
        with open_client(config) as client:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
            stages.done("cluster_start")
            threads = tf_threads(config, client)
            loading = preload_models(client, args.model, threads, bundle.model_id)
            tiled = run_plan(plan, client) if plan is not None else None
            stages.done("tile")
            grid = complete_grid(store)
            job = block_job(store, grid, bundle, args, threads)
            blocks = prepare_predictions(store, grid, prediction_identity(job, convention))
            done = predict_store(client, job, blocks)
            done.load_s += preload_seconds(client, loading)
            stages.done("infer")
        stages.done("cluster_close")
        threshold = bundle.threshold if args.threshold is None else args.threshold
        work = work_folder(out)
        found = stitch(store, grid, work, threshold, args.min_area)
        stages.done("stitch")
        write_outputs(store, grid, work, found)
        if args.figure:
            write_summary_figure(work / "preview.png", store, grid, found, threshold,
                                 work / "summary.png")
        stages.done("write")
        report = _report(args, out, store, bundle, grid, job, threshold, blocks, done, found,
                         stages, tiled)
        publish(out, work, report)
    return report


def _plan(args: argparse.Namespace, store: Path) -> tuple[Plan | None, str]:
    """The plan that tiles the scene into ``store`` (None when the input is a store) and the
    convention the store holds."""
    if store == Path(args.input).resolve():
        problem = check_metric_store_grid(store_grid(store), str(store))
        if problem:
            raise InferError(problem)
        return None, str(store_attrs(store)["convention"])
    spec = resolve_input(args.input, args.dem, offset=args.offset,
                         quantification=args.quantification, convention=args.convention)
    return plan_store(spec, store, overwrite=args.overwrite), spec.convention


def _store_bands(store: Path, plan: Plan | None) -> list[str]:
    return list(BANDS) if plan is not None else list(store_attrs(store)["bands"])


def _report(args: argparse.Namespace, out: Path, store: Path, bundle: Bundle, grid: Grid,
            job: BlockJob, threshold: float, blocks: list, done: BlockTimes, found: Landslides,
            stages: Stages, tiled: TileResult | None) -> dict:
    attrs = store_attrs(store)
    source = attrs.get("source") or {}
    pixel_area = abs(grid.transform[0] * grid.transform[4])
    return {
        "input": str(args.input),
        "store": str(store),
        "model": {"dir": str(args.model), "model_id": bundle.model_id},
        "threshold": threshold,
        "min_area_m2": args.min_area,
        "tta": args.tta,
        "harmonized": args.harmonize,
        "harmonization": ({"scale": list(job.scale), "offset": list(job.offset)}
                          if job.scale is not None else None),
        "convention": attrs["convention"],
        "conversion": source.get("conversion"),
        "grid": {"crs": crs_name(CRS.from_wkt(grid.crs_wkt)), "res_m": grid.res[0],
                 "resampled_from": (source.get("grid") or {}).get("resampled_from"),
                 "crs_wkt": grid.crs_wkt, "transform": list(grid.transform),
                 "height": grid.height, "width": grid.width},
        "blocks": {"total": grid.n_block_rows * grid.n_block_cols, "computed": len(blocks),
                   "tiled": tiled.blocks_written if tiled is not None else 0},
        "tiles_predicted": done.tiles,
        "infer_worker_s": {k: v for k, v in asdict(done).items() if k != "tiles"},
        "halo_px": args.halo,
        "compute_ratio": compute_ratio(grid, args.halo),
        "landslides": len(found.polygons),
        "landslide_area_m2": found.total_area_m2,
        "scene_area_m2": grid.height * grid.width * pixel_area,
        "timings": stages.timings(),
        "outputs": {name: str(out / name) for name in OUTPUTS},
    }


def compute_ratio(grid: Grid, halo: int) -> float:
    """Pixels run through the network over pixels of the padded store (1.0 = no overlap)."""
    total = 0
    for r, c in grid.blocks():
        (ya, yb, xa, xb), _ = block_context(r, c, grid.block, halo, grid.padded_height,
                                            grid.padded_width)
        total += (yb - ya) * (xb - xa)
    return total / (grid.padded_height * grid.padded_width)


def tf_threads(config: ClusterConfig, client: Client) -> int | None:
    """TensorFlow intra-op threads of a worker's one pool, which the worker's model tasks share
    (as many at once as its MODEL units). On the embedded cluster: the machine's cores shared
    among the worker processes. On other clusters whose workers all declare MODEL (`dask worker
    --resources MODEL=2`): each worker's thread count. None elsewhere: the worker decides."""
    if config.kind == "local":
        workers, _ = config.local.sized()
        return max(1, (os.cpu_count() or 1) // workers)
    if model_resources(client) is None:
        return None
    return min(w["nthreads"] for w in client.scheduler_info()["workers"].values())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_job(PROG, lambda: _summary(args, run(args)))


def _summary(args: argparse.Namespace, report: dict) -> int:
    t = report["timings"]
    print(f"{report['landslides']} landslides, {report['landslide_area_m2'] / 1e4:.2f} ha, in "
          f"{t['total_s']:.0f} s ({report['tiles_predicted']} tiles predicted) -> "
          f"{Path(args.out) / 'mask.tif'}, landslides.gpkg, preview.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
