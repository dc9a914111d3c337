"""``map_event``: several scenes of one event in one submission, on one cluster.

Each scene is mapped by ``map_scene`` into OUT/<scene name>/ (its own store, outputs and
report). The scenes share one cluster, and with it the model each worker loaded; two scenes are
in flight at once, so while the client merges one scene's polygons and writes its files the
cluster already tiles and predicts the next. A scene that fails does not stop the others: the
event's report lists it with its one-line reason and the job exits with status 2. A scene whose
published report says it was mapped with the same model, threshold and minimum area is not
mapped again, so a re-run redoes only what is missing. Then the event's own outputs:
OUT/inventory.gpkg (``products.inventory``: one polygon per landslide, in the event's CRS) and
OUT/probability.vrt (``products.mosaic``), published with OUT/report.json last.
"""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from rasterio.crs import CRS
from rasterio.errors import CRSError

from common import provenance
from common.errors import LandslideError
from mapping.cluster import load_cluster_config, open_client
from mapping.lock import exclusive
from mapping.outputs import (
    EVENT_OUTPUTS,
    check_outputs_owned,
    prepare_out,
    publish,
    work_folder,
)
from mapping.scene import (
    LOCK,
    InferError,
    MapRequest,
    SharedCluster,
    map_scene,
    plan_scene,
    published,
    scene_name,
)
from products.inventory import SceneLayer, layer_crs, write_inventory
from products.mosaic import write_mosaic_vrt
from products.rasters import PROVENANCE_TAG
from tiler.safe import looks_like_safe
from tiler.store import is_store
from unet.bundle import check_model_file, read_bundle

SCENES_IN_FLIGHT = 2
"""Scenes mapped at once on the shared cluster: one in the workers while the client finishes
the other."""
LIST_SUFFIXES = (".txt", ".lst")


def expand_inputs(inputs: list[str]) -> tuple[list[str], bool]:
    """The scenes named by the command line: paths as given, the .SAFE products inside a folder
    of products, the lines of a text file (paths relative to the file; blank lines and lines
    starting with # skipped). Returns them and whether this is an event (several scenes, or a
    folder or list of them) rather than one scene."""
    scenes, event = [], len(inputs) > 1
    for item in inputs:
        path = Path(item)
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            event = True
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    scenes.append(str(path.parent / line) if not Path(line).is_absolute()
                                  else line)
        elif path.is_dir() and not looks_like_safe(path) and not is_store(path) and (
                products := sorted(p for p in path.glob("*.SAFE") if p.is_dir())):
            event = True
            scenes += [str(p) for p in products]
        else:
            scenes.append(item)
    if not scenes:
        raise InferError(f"{' '.join(inputs)}: names no scene")
    return scenes, event


TILE_ID = re.compile(r"_(T\d{2}[A-Z]{3})_")
"""A Sentinel-2 granule id (MGRS tile) in a product's name: S2B_MSIL2A_..._T45RUL_..."""


SENSED = re.compile(r"_(\d{8}T\d{6})_")
"""The sensing start in a product's name: S2B_MSIL2A_20241008T045701_..."""


def match_pre(scene: str, pre: str | None) -> str | None:
    """The pre-event scene for ``scene``: ``pre`` itself, or, when ``pre`` is a folder of .SAFE
    products, the latest one of the same granule id sensed before ``scene`` (the folder may hold
    the post-event products too). InferError when there is none."""
    if pre is None:
        return None
    folder = Path(pre)
    if not folder.is_dir() or looks_like_safe(folder) or is_store(folder):
        return pre
    products = sorted(p for p in folder.glob("*.SAFE") if p.is_dir())
    if not products:
        return pre
    name = Path(scene).name
    tile = TILE_ID.search(name)
    if tile is None:
        raise InferError(f"{scene}: no granule id (_T##XXX_) in its name to find its "
                         f"pre-event product in {pre}")
    sensed = SENSED.search(name)
    found = [p for p in products if f"_{tile.group(1)}_" in p.name
             and p.resolve() != Path(scene).resolve()
             and (sensed is None or (SENSED.search(p.name) or sensed).group(1)
                  < sensed.group(1))]
    if not found:
        raise InferError(f"{pre}: no pre-event product of granule {tile.group(1)} sensed "
                         f"before {name}")
    return str(max(found, key=lambda p: SENSED.search(p.name).group(1)
                   if SENSED.search(p.name) else ""))


def _map_one(request: MapRequest, shared: SharedCluster) -> dict:
    return map_scene(replace(request, pre=match_pre(request.input, request.pre)), shared)


def event_crs(crs: str | None, first_layer: Path | None) -> CRS:
    if crs is not None:
        try:
            return CRS.from_user_input(crs)
        except CRSError as exc:
            raise InferError(f"--crs {crs}: not a CRS ({exc})") from None
    if first_layer is None:
        raise InferError("no scene of the event was mapped: no inventory")
    return layer_crs(first_layer)


def _check_names(scenes: list[str]) -> list[str]:
    names = [scene_name(Path(s)) for s in scenes]
    for name in set(names):
        clash = [s for s, n in zip(scenes, names, strict=True) if n == name]
        if len(clash) > 1:
            raise InferError(f"{clash[1]}: has the same name as {clash[0]} ({name!r}); each "
                             "scene's outputs go to OUT/<name>/")
    return names


def already_mapped(request: MapRequest) -> dict | None:
    """The published report of this scene when it, and every output it lists, was made from
    exactly what the request would make now (``mapping.scene.plan_scene``'s identities: every
    input file, the model and its bundle, every option that changes an output)."""
    try:
        request = replace(request, pre=match_pre(request.input, request.pre))
        scene = plan_scene(request, read_bundle(request.model), Path(request.out).resolve())
    except LandslideError:
        return None  # mapped (or refused, with its reason) like any scene to do
    return published(Path(request.out), scene.identities.products)


def map_event(base: MapRequest, inputs: list[str], crs: str | None = None) -> dict:
    """Map every scene of ``inputs`` into base.out/<scene>/ and write the event's inventory,
    mosaic and report. Raises LandslideError for what stops the whole event (model, cluster.yaml,
    output folder, names); a failing scene is reported instead."""
    start = time.perf_counter()
    read_bundle(base.model)
    check_model_file(base.model)
    config = load_cluster_config(base.cluster)
    out = prepare_out(Path(base.out))
    names = _check_names(inputs)
    if crs is not None:
        event_crs(crs, None)
    requests = [replace(base, input=s, out=str(out / n)) for s, n in
                zip(inputs, names, strict=True)]
    with exclusive(out / LOCK, out):
        check_outputs_owned(out)
        results = _map_all(requests, config)
        report = _event_outputs(out, base, requests, names, results, crs)
        report["timings"] = {"total_s": time.perf_counter() - start}
        work = out / ".partial"
        publish(out, work, report, required=EVENT_OUTPUTS,
                identity=report[provenance.ATTRIBUTE]["event"]["digest"])
    return report


def _map_all(requests: list[MapRequest], config) -> list[dict]:
    """Each scene's outcome: {"status": "mapped"|"unchanged"|"failed", "report"|"error"}."""
    current = [already_mapped(r) for r in requests]  # each scene planned once, here
    todo = {i: r for i, (r, report) in enumerate(zip(requests, current, strict=True))
            if report is None}
    results = [{"status": "unchanged", "report": report} if report is not None else None
               for report in current]
    if not todo:
        return results
    with open_client(config) as client:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        shared = SharedCluster(client, config)
        with ThreadPoolExecutor(SCENES_IN_FLIGHT) as pool:
            futures = {i: pool.submit(_map_one, r, shared) for i, r in todo.items()}
            for i, future in futures.items():
                try:
                    results[i] = {"status": "mapped", "report": future.result()}
                except LandslideError as exc:
                    results[i] = {"status": "failed", "error": str(exc)}
                    print(f"{requests[i].input}: failed: {exc}", file=sys.stderr)
    return results


def event_identity(names: list[str], results: list[dict], crs: CRS | None) -> provenance.Identity:
    """What the event's own outputs are made from: each scene's products (by digest; a failed
    scene as failed) and the inventory's CRS."""
    scenes = {}
    for name, res in zip(names, results, strict=True):
        stored = ((res.get("report") or {}).get(provenance.ATTRIBUTE) or {}).get("products")
        scenes[name] = (stored or {}).get("digest") if res["status"] != "failed" else "failed"
    return provenance.make("event", {"scenes": scenes,
                                     "crs": crs.to_wkt() if crs is not None else None})


def _event_outputs(out: Path, base: MapRequest, requests: list[MapRequest], names: list[str],
                   results: list[dict], crs: str | None) -> dict:
    work = work_folder(out)
    mapped = [(n, r) for n, r, res in zip(names, requests, results, strict=True)
              if res["status"] != "failed"]
    layers = [SceneLayer(n, Path(r.out) / "landslides.gpkg") for n, r in mapped]
    target = event_crs(crs, layers[0].path if layers else None) if layers else None
    identity = event_identity(names, results, target)
    inventory = mosaic_note = None
    if layers:
        bundle = read_bundle(base.model)
        count = write_inventory(work / "inventory.gpkg", layers, target,
                                {"model_id": bundle.model_id,
                                 "scenes": ",".join(n for n, _ in mapped),
                                 provenance.ATTRIBUTE: identity.digest})
        inventory = {"landslides": count, "crs": target.to_string()}
        mosaic_note = write_mosaic_vrt([Path(r.out) / "probability.tif" for _, r in mapped],
                                       work / "probability.vrt", out / "probability.vrt",
                                       {PROVENANCE_TAG: identity.digest})
    scenes = []
    for name, request, res in zip(names, requests, results, strict=True):
        entry = {"name": name, "input": request.input, "out": request.out,
                 "status": res["status"]}
        if res["status"] == "failed":
            entry["error"] = res["error"]
        else:
            entry["landslides"] = res["report"]["landslides"]
            entry["landslide_area_m2"] = res["report"]["landslide_area_m2"]
        scenes.append(entry)
    outputs = {}
    if inventory:
        outputs["inventory.gpkg"] = str(out / "inventory.gpkg")
    if (work / "probability.vrt").is_file():
        outputs["probability.vrt"] = str(out / "probability.vrt")
    return {"event": True, provenance.ATTRIBUTE: {"event": identity.as_dict()},
            "scenes": scenes, "failed": sum(s["status"] == "failed"
                                                           for s in scenes),
            "inventory": inventory, "mosaic_note": mosaic_note,
            "outputs": {**outputs, "report.json": str(out / "report.json")}}
