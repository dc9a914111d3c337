"""report.json of a mapped scene: what was mapped, how, what was found, and where the time went."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rasterio.crs import CRS

from mapping.block import BlockJob
from mapping.graph import GraphResult
from mapping.outputs import OUTPUTS
from products.polygons import Landslides
from tiler.grid import Grid, block_context
from tiler.gridding import crs_name
from tiler.run import TileResult
from tiler.store import mask_shares, store_attrs
from unet.bundle import Bundle

if TYPE_CHECKING:
    from mapping.scene import MapRequest


def report(request: MapRequest, out: Path, store: Path, bundle: Bundle, job: BlockJob,
           threshold: float, blocks: list, graph: GraphResult, found: Landslides,
           timings: dict[str, float], tiled: TileResult | None) -> dict:
    attrs = store_attrs(store)
    source = attrs.get("source") or {}
    grid = job.grid
    pixel_area = abs(grid.transform[0] * grid.transform[4])
    done = graph.times
    return {
        "input": str(request.input),
        "store": str(store),
        "model": {"dir": str(request.model), "model_id": bundle.model_id},
        "threshold": threshold,
        "min_area_m2": request.min_area,
        "tta": request.tta,
        "harmonized": request.harmonize,
        "pre": request.pre,
        "require_vegetation_loss": request.require_vegetation_loss,
        "kept_without_pre_event": found.kept_without_pre_event,
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
        "overlap_s": graph.overlap(),
        "halo_px": request.halo,
        "compute_ratio": compute_ratio(grid, request.halo),
        "unusable_pixels": mask_shares(store),
        "landslides": len(found.polygons),
        "landslide_area_m2": found.total_area_m2,
        "scene_area_m2": grid.height * grid.width * pixel_area,
        "timings": timings,
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
