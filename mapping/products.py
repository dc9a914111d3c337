"""The user-facing files of a mapped scene, from the blocks' products and the store.

Written under the job's temporary folder (``mapping.outputs.work_folder``): the polygons merged
across block borders, one pass over the store's probabilities for the probability raster, the
mask burnt from the polygons and each polygon's mean probability, then the COGs, the GeoPackage
and the preview assembled from the blocks' pixels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from common.provenance import Identity
from mapping.graph import GraphResult
from products.change import NO_EVIDENCE
from products.polygons import (
    Landslides,
    centroids_lonlat,
    merge_block_polygons,
    vegetation_loss_filter,
    write_polygons,
    write_rasters,
)
from products.preview import assemble_blocks, render_preview
from products.rasters import PROVENANCE_TAG, tag_png, tag_raster, to_cog
from products.summary_figure import write_summary_figure
from tiler.grid import Grid


def landslides(store: Path, predictions: Path, grid: Grid, graph: GraphResult, work: Path,
               min_area_m2: float, identity: dict[str, str | None],
               require_vegetation_loss: float | None = None,
               with_change: bool = False) -> Landslides:
    """The scene's landslides with their attributes, and the probability and mask rasters
    (not yet COGs) in work (and the rdNDVI raster when ``with_change``: this run's pre-event
    change layers are in the prediction store).
    ``identity``: ``scene``, ``sensing_date``, ``model_id``, repeated on every polygon.
    ``require_vegetation_loss`` X: only polygons that lost vegetation (vegetated before, mean
    rdNDVI at most -X) are kept, and those without any usable pre-event pixel (no evidence
    either way; ``change_evidence`` says which), before the mask is burnt
    (``products.change.vegetation_evidence``)."""
    polygons = merge_block_polygons(graph.polygons, grid, min_area_m2)
    evidence, kept_without = None, None
    if require_vegetation_loss is not None:
        polygons, evidence = vegetation_loss_filter(store, predictions, grid, polygons,
                                                    require_vegetation_loss)
        kept_without = int(np.sum(evidence == NO_EVIDENCE))
        if kept_without:
            print(f"{identity.get('scene')}: {kept_without} landslides kept by "
                  f"--require-vegetation-loss without any usable pre-event pixel "
                  f"(change_evidence 'none')", file=sys.stderr)
    stats = write_rasters(store, predictions, grid, polygons, work / "probability.raw.tif",
                          work / "mask.raw.tif",
                          work / "change.raw.tif" if with_change else None)
    n = len(polygons)
    lon, lat = centroids_lonlat(polygons, grid.crs_wkt)
    attributes = {
        "perimeter_m": np.array([p.length for p in polygons], dtype=np.float64),
        **{k: v for k, v in stats.items() if k != "mean_prob"},
        "lon": lon, "lat": lat,
        **{k: [v or ""] * n for k, v in identity.items()},
        **({"change_evidence": evidence.tolist()} if evidence is not None else {}),
    }
    return Landslides(polygons=polygons,
                      areas_m2=np.array([p.area for p in polygons], dtype=np.float64),
                      mean_probability=stats["mean_prob"], attributes=attributes,
                      kept_without_pre_event=kept_without)


def write_outputs(predictions: Path, grid: Grid, graph: GraphResult, work: Path,
                  found: Landslides, step: int, metadata: dict[str, str], figure: bool,
                  geojson: bool, identity: Identity) -> None:
    """COGs, polygons, preview (summary.png when ``figure``, landslides.geojson when
    ``geojson``), under work. ``metadata`` goes into the polygon layers; every file records
    the products' ``identity`` (a GeoTIFF tag, the layers' metadata, a PNG text chunk)."""
    tags = {PROVENANCE_TAG: identity.digest}
    for name, resampling in (("probability", "AVERAGE"), ("mask", "NEAREST"),
                             ("change", "AVERAGE")):
        raw = work / f"{name}.raw.tif"
        if raw.is_file():
            tag_raster(raw, tags)
            to_cog(raw, work / f"{name}.tif", resampling)
    write_polygons(work / "landslides.gpkg", found, grid.crs_wkt, metadata=metadata)
    if geojson:
        write_polygons(work / "landslides.geojson", found, grid.crs_wkt, metadata=metadata,
                       driver="GeoJSON")
    rgb, valid = assemble_blocks(graph.preview)
    render_preview(rgb, valid, step, grid, found.polygons, work / "preview.png")
    tag_png(work / "preview.png", tags)
    if figure:
        write_summary_figure(work / "preview.png", predictions, grid, found,
                             float(metadata["threshold"]), work / "summary.png", tags)
