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
import json
import logging
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from distributed import Client

from common import provenance
from common.errors import InferError
from common.provenance import Identity
from mapping.block import BlockJob
from mapping.cluster import ClusterConfig, load_cluster_config, open_client, tf_threads
from mapping.graph import GraphResult, preload_models, preload_seconds, run_graph
from mapping.lock import exclusive
from mapping.outputs import (
    check_outputs_owned,
    prepare_out,
    publish,
    refuse_outputs_over_inputs,
    work_folder,
)
from mapping.products import landslides, write_outputs
from mapping.report import report
from products.change import LAYERS, check_ndvi_convention
from products.preview import preview_step
from tiler.bands import BANDS
from tiler.grid import Grid
from tiler.gridding import check_metric_store_grid
from tiler.predictions import complete_grid, drop_change, prepare_change, prepare_predictions
from tiler.run import Plan, TileResult, finish_plan, plan_store, run_plan
from tiler.safe import looks_like_safe, sensing_date
from tiler.sources import SceneSpec, resolve_input
from tiler.stats import band_percentiles, harmonization
from tiler.store import is_store, store_attrs, store_grid, store_identity
from unet.bundle import Bundle, bundle_identity, check_model_file, read_bundle

HALO = 32
STORE = "tiles.zarr"
PRE_STORE = "pre.zarr"
PREDICTIONS = "predictions.zarr"
LOCK = ".lock"



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


@dataclass(frozen=True)
class Identities:
    """What every derived thing of a scene is made from (``common.provenance``): the one
    decision of what is reused (tile store, pre-event store, predictions, change layers, the
    worker's model) and of whether a published map is current."""

    tiles: Identity
    model: Identity
    predictions: Identity
    pre_tiles: Identity | None
    change: Identity | None
    products: Identity

    def as_dict(self) -> dict:
        """report.json's ``provenance``: each identity's digest and record."""
        return {name: (getattr(self, name).as_dict() if getattr(self, name) else None)
                for name in ("products", "predictions", "change", "tiles", "pre_tiles",
                             "model")}


def scene_identities(request: MapRequest, model: Identity, tiles: Identity,
                     pre_tiles: Identity | None, threshold: float) -> Identities:
    """The identities of a scene's predictions, change layers and products from those of its
    tiles, its pre-event tiles and its model, and the job's options. Harmonisation enters as
    a flag: its scale and offset are a function of the tiles and of the model's training
    percentiles, both already in the record."""
    predictions = provenance.make("predictions", {
        "tiles": provenance.derived(tiles), "model": provenance.derived(model),
        "tta": request.tta, "halo": request.halo, "harmonize": request.harmonize})
    change = None if pre_tiles is None else provenance.make("change", {
        "tiles": provenance.derived(tiles), "pre_tiles": provenance.derived(pre_tiles)})
    products = provenance.make("products", {
        "predictions": provenance.derived(predictions), "change": provenance.derived(change),
        "threshold": float(threshold), "min_area_m2": float(request.min_area),
        "require_vegetation_loss": request.require_vegetation_loss,
        "vector_format": request.vector_format, "figure": request.figure,
        "scene": scene_name(Path(request.input)),
        "model_dir": str(Path(request.model).resolve())})
    return Identities(tiles, model, predictions, pre_tiles, change, products)


@dataclass(frozen=True)
class ScenePlan:
    """A scene checked and resolved, nothing written yet: what ``map_scene`` will make and
    from what (``identities``)."""

    spec: SceneSpec | None
    """None when the input is a tile store (read only)."""
    store: Path
    grid: Grid
    convention: str
    pre: SceneSpec | None
    threshold: float
    identities: Identities


def plan_scene(request: MapRequest, bundle: Bundle, out: Path) -> ScenePlan:
    """Resolve the scene (and its pre-event scene) and compute every identity, without
    writing anything: refuses what cannot be mapped correctly (InferError, InputError, ...).
    The same call decides whether an event's published scene is still current."""
    model = bundle_identity(request.model)
    input_store = Path(request.input).resolve()
    if is_store(input_store):
        problem = check_metric_store_grid(store_grid(input_store), str(input_store))
        if problem:
            raise InferError(problem)
        spec, store = None, input_store
        grid, convention = complete_grid(store), str(store_attrs(store)["convention"])
        bands, tiles = list(store_attrs(store)["bands"]), store_identity(store)
    else:
        spec = resolve_input(request.input, request.dem, offset=request.offset,
                             quantification=request.quantification,
                             convention=request.convention, mask=request.mask,
                             mask_values=request.mask_values)
        store, grid, convention = out / STORE, spec.grid, spec.convention
        bands, tiles = list(BANDS), spec.identity()
    check_compatible(request.input, bands, convention, bundle, request.harmonize,
                     request.model)
    pre = _pre_spec(request, grid, convention)
    threshold = bundle.threshold if request.threshold is None else request.threshold
    identities = scene_identities(request, model, tiles,
                                  pre.identity() if pre is not None else None, threshold)
    return ScenePlan(spec, store, grid, convention, pre, threshold, identities)


def published(out: Path, identity: Identity) -> dict | None:
    """The report published in ``out`` when it, and every output it lists, was made from
    ``identity``; else None (nothing there, or made from other inputs or settings)."""
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None
    stored = ((report.get(provenance.ATTRIBUTE) or {}).get("products")
              if isinstance(report, dict) else None)
    if not provenance.matches(stored, identity):
        return None
    outputs = report.get("outputs") or {}
    return report if all(Path(p).is_file() for p in outputs.values()) else None


@dataclass(frozen=True)
class SharedCluster:
    """A cluster that outlives one scene (the scenes of an event): used, never closed."""

    client: Client
    config: ClusterConfig


def map_scene(request: MapRequest, shared: SharedCluster | None = None) -> dict:
    """Map one scene; returns its report (also published as OUT/report.json). Raises
    LandslideError (one line, naming the file) for anything it cannot map correctly. Starts and
    stops a cluster of its own (cluster.yaml) unless given a ``shared`` one.

    Inputs are read only (a tile store given as input included: the predictions go to
    OUT/predictions.zarr). The outputs an earlier run published stay as they were until this
    run's replace them at the very end, so a run that fails or is interrupted leaves the last
    good map in place."""
    stages = Stages()
    bundle = read_bundle(request.model)
    check_model_file(request.model)
    config = shared.config if shared else load_cluster_config(request.cluster)
    out = prepare_out(Path(request.out))
    refuse_outputs_over_inputs(out, {"INPUT": request.input, "--dem": request.dem,
                                     "--model": request.model, "--cluster": request.cluster,
                                     "--mask": request.mask, "--pre": request.pre})
    with exclusive(out / LOCK, out):
        check_outputs_owned(out)
        scene = plan_scene(request, bundle, out)
        for spec in (scene.spec, scene.pre):
            if spec is not None and spec.mask_note:  # each note names its file
                print(f"python -m jobs.infer: note: {spec.mask_note}", file=sys.stderr)
        plan = (plan_store(scene.spec, scene.store, overwrite=request.overwrite,
                           replace_other=True) if scene.spec is not None else None)
        pre = (plan_store(scene.pre, out / PRE_STORE, replace_other=True)
               if scene.pre is not None else None)
        stages.done("setup")
        with ExitStack() as cluster:
            if shared:
                client = shared.client
            else:
                client = cluster.enter_context(open_client(config))
                print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
            stages.done("cluster_start")
            graph, tiled, job, blocks = _map_blocks(request, client, config, plan, scene,
                                                    bundle, stages, pre)
            closing = _close_in_background(cluster.pop_all(), client,
                                           not shared and config.kind == "local")
        work = work_folder(out)
        identity = scene.identities.products
        found = landslides(scene.store, job.predictions, job.grid, graph, work,
                           request.min_area, scene_identity(request, bundle),
                           request.require_vegetation_loss, with_change=pre is not None)
        stages.done("polygons_rasters")
        write_outputs(job.predictions, job.grid, graph, work, found, job.preview_step,
                      layer_metadata(request, bundle, scene.threshold, identity),
                      request.figure, request.vector_format == "geojson", identity)
        stages.done("write")
        closing.join()
        stages.done("cluster_close")
        result = report(request, out, scene.store, bundle, job, scene.threshold, blocks, graph,
                        found, stages.timings(), tiled)
        result[provenance.ATTRIBUTE] = scene.identities.as_dict()
        publish(out, work, result, identity=identity.digest)
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


def layer_metadata(request: MapRequest, bundle: Bundle, threshold: float,
                   identity: Identity) -> dict[str, str]:
    """The polygon layer's own metadata: how its polygons were made, and from what."""
    return {"threshold": repr(float(threshold)), "model_id": bundle.model_id,
            "model_dir": str(Path(request.model).resolve()),
            "min_area_m2": repr(float(request.min_area)), "scene": str(request.input),
            "tta": str(request.tta), "harmonized": str(request.harmonize),
            "require_vegetation_loss": str(request.require_vegetation_loss),
            "pre": str(request.pre), provenance.ATTRIBUTE: identity.digest}


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
                scene: ScenePlan, bundle: Bundle, stages: Stages, pre: Plan | None = None
                ) -> tuple[GraphResult, TileResult | None, BlockJob, list]:
    """The Dask part: preload the model on every worker, tile and map in one graph (tiling
    first on its own only when --harmonize needs the whole scene's percentiles)."""
    threads = tf_threads(config, client)
    model_key = scene.identities.model.digest
    loading = preload_models(client, request.model, threads, model_key)
    tiled = None
    if plan is not None and request.harmonize:
        tiled, plan = run_plan(plan, client), None
    grid = plan.spec.grid if plan is not None and not plan.already_complete else \
        complete_grid(scene.store)
    predictions = Path(request.out).resolve() / PREDICTIONS
    job = _block_job(request, scene, predictions, grid, bundle, threads, pre)
    blocks = prepare_predictions(predictions, grid, scene.identities.predictions)
    if pre is not None:
        prepare_change(predictions, grid, len(LAYERS), scene.identities.change)
    else:
        drop_change(predictions)
    graph = run_graph(client, plan, job, pre)
    if plan is not None:
        tiled = finish_plan(plan, graph.valid_pixels)
    if pre is not None:
        finish_plan(pre, graph.pre_valid_pixels)
    graph.times.load_s += preload_seconds(client, loading)
    stages.done("blocks")
    return graph, tiled, job, blocks


def _block_job(request: MapRequest, scene: ScenePlan, predictions: Path, grid: Grid,
               bundle: Bundle, threads: int | None, pre: Plan | None = None) -> BlockJob:
    scale = offset = None
    if request.harmonize:
        q = list(bundle.percentiles["q"])
        train = np.asarray(bundle.percentiles["values"], dtype=np.float64).T  # (len(q), bands)
        found = band_percentiles(scene.store, grid, q)
        scale, offset = harmonization(found, train, q.index(2), q.index(98))
        scale, offset = tuple(map(float, scale)), tuple(map(float, offset))
    return BlockJob(store=str(scene.store), predictions=str(predictions), grid=grid,
                    model_dir=str(Path(request.model).resolve()),
                    threshold=scene.threshold, min_area_m2=request.min_area,
                    bands=tuple(store_attrs(scene.store)["bands"]),
                    preview_step=preview_step(grid), halo=request.halo, tta=request.tta,
                    intra_op_threads=threads, scale=scale, offset=offset,
                    model_key=scene.identities.model.digest,
                    pre_store=str(pre.store) if pre is not None else None)


def _pre_spec(request: MapRequest, grid: Grid, convention: str) -> SceneSpec | None:
    """The pre-event scene resolved onto this scene's grid (tiled into OUT/pre.zarr)."""
    if request.pre is None:
        if request.require_vegetation_loss is not None:
            raise InferError("--require-vegetation-loss: needs --pre (the pre-event scene)")
        return None
    check_ndvi_convention(convention, request.input)
    spec = resolve_input(request.pre, request.dem, offset=request.offset,
                         quantification=request.quantification, convention=request.convention,
                         grid=grid)
    if spec.convention != convention:
        raise InferError(f"{request.pre}: the pre-event scene holds {spec.convention!r}, the "
                         f"scene {convention!r}: their NDVI cannot be compared")
    return spec
