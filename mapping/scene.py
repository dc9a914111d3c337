"""``map_scene``: a whole scene in, a georeferenced landslide map out (what ``jobs.infer`` runs).

Everything that can be refused (bundle and model file, cluster.yaml, scene, DEM, output folder)
is refused before any cluster starts. Then one Dask graph tiles the scene into the store and maps
every block as soon as its halo is tiled (``mapping.graph``); the client merges the blocks'
polygons and writes the COGs, polygons and preview under a temporary folder, published by
renames with report.json last. Probabilities are kept in the store as blocks finish, so a re-run
after a crash recomputes only the blocks that were not written.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from distributed import Client

from common.errors import LandslideError
from mapping.block import BlockJob
from mapping.cluster import ClusterConfig, load_cluster_config, open_client, tf_threads
from mapping.graph import GraphResult, preload_models, preload_seconds, run_graph
from mapping.lock import exclusive, store_lock
from mapping.outputs import (
    check_outputs_owned,
    clear_earlier_outputs,
    prepare_out,
    publish,
    refuse_outputs_over_inputs,
    work_folder,
)
from mapping.products import landslides, write_outputs
from mapping.report import report
from tiler.bands import BANDS
from tiler.change import LAYERS
from tiler.grid import Grid
from tiler.gridding import check_metric_store_grid
from tiler.predictions import complete_grid, prepare_change, prepare_predictions
from tiler.preview import preview_step
from tiler.run import Plan, TileResult, finish_plan, plan_store, run_plan
from tiler.safe import looks_like_safe, sensing_date
from tiler.sources import resolve_input
from tiler.stats import band_percentiles, harmonization
from tiler.store import is_store, store_attrs, store_grid
from unet.bundle import Bundle, check_model_file, read_bundle

HALO = 32
STORE = "tiles.zarr"
PRE_STORE = "pre.zarr"
LOCK = ".lock"


class InferError(LandslideError):
    """A scene and a model that do not go together."""


@dataclass(frozen=True)
class MapRequest:
    """What to map and how: the options of ``python -m jobs.infer``."""

    input: str
    model: str
    out: str
    cluster: str | None = None
    dem: str | None = None
    offset: float | None = None
    quantification: float | None = None
    convention: str | None = None
    mask: str | None = None
    """An unusable-pixel raster (e.g. an SCL); default: an L2A product's own SCL."""
    mask_values: tuple[float, ...] | None = None
    threshold: float | None = None
    """None: the bundle's."""
    min_area: float = 200.0
    tta: bool = False
    harmonize: bool = False
    figure: bool = False
    overwrite: bool = False
    halo: int = HALO
    pre: str | None = None
    """A pre-event scene (same kinds as input), tiled onto this scene's grid: change.tif and
    each polygon's ndvi_pre, ndvi_post, rdndvi."""
    require_vegetation_loss: float | None = None
    """Drop polygons whose mean rdNDVI is above minus this (ground already bare before)."""
    vector_format: str = "gpkg"
    """"gpkg", or "geojson": landslides.geojson (WGS 84) next to landslides.gpkg."""


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


def prediction_identity(job: BlockJob, convention: str) -> dict:
    """Everything that changes the probabilities: the key of the predictions kept in a store."""
    return {"model_id": job.model_id, "tta": job.tta, "halo": job.halo,
            "convention": convention, "scale": job.scale, "offset": job.offset}


@dataclass(frozen=True)
class SharedCluster:
    """A cluster that outlives one scene (the scenes of an event): used, never closed."""

    client: Client
    config: ClusterConfig


def map_scene(request: MapRequest, shared: SharedCluster | None = None) -> dict:
    """Map one scene; returns its report (also published as OUT/report.json). Raises
    LandslideError (one line, naming the file) for anything it cannot map correctly. Starts and
    stops a cluster of its own (cluster.yaml) unless given a ``shared`` one."""
    stages = Stages()
    bundle = read_bundle(request.model)
    check_model_file(request.model)
    config = shared.config if shared else load_cluster_config(request.cluster)
    out = prepare_out(Path(request.out))
    refuse_outputs_over_inputs(out, {"INPUT": request.input, "--dem": request.dem,
                                     "--model": request.model, "--cluster": request.cluster,
                                     "--mask": request.mask, "--pre": request.pre})
    store = Path(request.input).resolve() if is_store(request.input) else out / STORE
    with exclusive(out / LOCK, out), exclusive(store_lock(store), store):
        check_outputs_owned(out)
        plan, convention = _plan(request, store)
        bands = list(BANDS) if plan is not None else list(store_attrs(store)["bands"])
        check_compatible(request.input, bands, convention, bundle, request.harmonize,
                         request.model)
        pre = _pre_plan(request, out, plan.spec.grid if plan else store_grid(store), convention)
        clear_earlier_outputs(out)
        threshold = bundle.threshold if request.threshold is None else request.threshold
        stages.done("setup")
        with ExitStack() as cluster:
            if shared:
                client = shared.client
            else:
                client = cluster.enter_context(open_client(config))
                print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
            stages.done("cluster_start")
            graph, tiled, job, blocks = _map_blocks(request, client, config, plan, store,
                                                    bundle, convention, threshold, stages, pre)
            closing = _close_in_background(cluster.pop_all(), client,
                                           not shared and config.kind == "local")
        work = work_folder(out)
        found = landslides(store, job.grid, graph, work, request.min_area,
                           scene_identity(request, bundle), request.require_vegetation_loss)
        stages.done("polygons_rasters")
        write_outputs(store, job.grid, graph, work, found, job.preview_step,
                      layer_metadata(request, bundle, threshold), request.figure,
                      request.vector_format == "geojson")
        stages.done("write")
        closing.join()
        stages.done("cluster_close")
        result = report(request, out, store, bundle, job, threshold, blocks, graph, found,
                        stages.timings(), tiled)
        publish(out, work, result)
    return result


def scene_name(path: Path) -> str:
    """A scene's name: its file or folder name without .tif/.SAFE/.zarr."""
    path = Path(path)
    return path.stem if path.suffix.lower() in (".tif", ".tiff", ".safe", ".zarr") else path.name


def scene_identity(request: MapRequest, bundle: Bundle) -> dict[str, str | None]:
    """What every polygon of the scene carries: the scene's name, its sensing date (from a
    SAFE product's metadata; None for other inputs) and the model."""
    path = Path(request.input)
    return {"scene": scene_name(path),
            "sensing_date": sensing_date(path) if looks_like_safe(path) else None,
            "model_id": bundle.model_id}


def layer_metadata(request: MapRequest, bundle: Bundle, threshold: float) -> dict[str, str]:
    """The polygon layer's own metadata: how its polygons were made."""
    return {"threshold": repr(float(threshold)), "model_id": bundle.model_id,
            "model_dir": str(Path(request.model).resolve()),
            "min_area_m2": repr(float(request.min_area)), "scene": str(request.input),
            "tta": str(request.tta), "harmonized": str(request.harmonize)}


def _close_in_background(cluster: ExitStack, client, own: bool) -> threading.Thread:
    """Shut the cluster down while the client writes the outputs (a LocalCluster takes a
    second or two to stop its workers; nothing of it is needed any more). A cluster of our own
    (``own``: the embedded one) is told to keep quiet first: its workers may log a closed
    connection while they stop, which is no news to the user."""
    if own:
        with contextlib.suppress(Exception):
            client.run(_quiet, nanny=True)
            client.run_on_scheduler(_quiet)
            _quiet()

    def close() -> None:
        with contextlib.suppress(Exception):
            cluster.close()

    closing = threading.Thread(target=close, name="close-cluster")
    closing.start()
    return closing


def _quiet() -> None:
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _map_blocks(request: MapRequest, client, config: ClusterConfig, plan: Plan | None,
                store: Path, bundle: Bundle, convention: str, threshold: float,
                stages: Stages, pre: Plan | None = None
                ) -> tuple[GraphResult, TileResult | None, BlockJob, list]:
    """The Dask part: preload the model on every worker, tile and map in one graph (tiling
    first on its own only when --harmonize needs the whole scene's percentiles)."""
    threads = tf_threads(config, client)
    loading = preload_models(client, request.model, threads, bundle.model_id)
    tiled = None
    if plan is not None and request.harmonize:
        tiled, plan = run_plan(plan, client), None
    grid = plan.spec.grid if plan is not None and not plan.already_complete else \
        complete_grid(store)
    job = _block_job(request, store, grid, bundle, threshold, threads, pre)
    blocks = prepare_predictions(store, grid, prediction_identity(job, convention))
    if pre is not None:
        prepare_change(store, grid, len(LAYERS))
    graph = run_graph(client, plan, job, pre)
    if plan is not None:
        tiled = finish_plan(plan, graph.valid_pixels)
    if pre is not None:
        finish_plan(pre, graph.pre_valid_pixels)
    graph.times.load_s += preload_seconds(client, loading)
    stages.done("blocks")
    return graph, tiled, job, blocks


def _block_job(request: MapRequest, store: Path, grid: Grid, bundle: Bundle, threshold: float,
               threads: int | None, pre: Plan | None = None) -> BlockJob:
    scale = offset = None
    if request.harmonize:
        q = list(bundle.percentiles["q"])
        train = np.asarray(bundle.percentiles["values"], dtype=np.float64).T  # (len(q), bands)
        scene = band_percentiles(store, grid, q)
        scale, offset = harmonization(scene, train, q.index(2), q.index(98))
        scale, offset = tuple(map(float, scale)), tuple(map(float, offset))
    return BlockJob(store=str(store), grid=grid, model_dir=str(Path(request.model).resolve()),
                    threshold=threshold,
                    min_area_m2=request.min_area, bands=tuple(store_attrs(store)["bands"]),
                    preview_step=preview_step(grid), halo=request.halo, tta=request.tta,
                    intra_op_threads=threads, scale=scale, offset=offset,
                    model_id=bundle.model_id,
                    pre_store=str(pre.store) if pre is not None else None)


def _plan(request: MapRequest, store: Path) -> tuple[Plan | None, str]:
    """The plan that tiles the scene into ``store`` (None when the input is a store) and the
    convention the store holds."""
    if store == Path(request.input).resolve():
        problem = check_metric_store_grid(store_grid(store), str(store))
        if problem:
            raise InferError(problem)
        return None, str(store_attrs(store)["convention"])
    spec = resolve_input(request.input, request.dem, offset=request.offset,
                         quantification=request.quantification, convention=request.convention,
                         mask=request.mask, mask_values=request.mask_values)
    if spec.mask_note:
        print(f"{request.input}: {spec.mask_note}", file=sys.stderr)
    return plan_store(spec, store, overwrite=request.overwrite), spec.convention


def _pre_plan(request: MapRequest, out: Path, grid: Grid, convention: str) -> Plan | None:
    """The plan that tiles the pre-event scene onto this scene's grid, into OUT/pre.zarr."""
    if request.pre is None:
        if request.require_vegetation_loss is not None:
            raise InferError("--require-vegetation-loss: needs --pre (the pre-event scene)")
        return None
    spec = resolve_input(request.pre, request.dem, offset=request.offset,
                         quantification=request.quantification, convention=request.convention,
                         grid=grid)
    if spec.convention != convention:
        raise InferError(f"{request.pre}: the pre-event scene holds {spec.convention!r}, the "
                         f"scene {convention!r}: their NDVI cannot be compared")
    if spec.mask_note:
        print(f"{request.pre}: {spec.mask_note}", file=sys.stderr)
    return plan_store(spec, out / PRE_STORE, overwrite=True)
