"""One Dask graph for a scene: tiling and mapping overlap.

Mapping a block needs only the block and its halo in the store, so each block's ``map_block``
task depends on the tiling tasks of the block and its eight neighbours, not on the whole scene:
the model starts on the first blocks while later ones are still being read, and every block's
polygons and preview pixels are made by the task that has it in memory. The client only submits
and watches. Tasks are submitted row by row (tiling of row r + 1, then mapping of row r), and
Dask runs ready tasks in submission order: a row is mapped as soon as its halo is tiled, and the
store holds few blocks that wait for the model.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from distributed import Client, Future, as_completed
from tqdm import tqdm

from mapping.block import BlockJob, BlockResult, BlockTimes, map_block
from mapping.cluster import model_resources
from tiler.grid import neighbours
from tiler.run import Plan, tile_block
from tiler.sources import SceneSpec
from unet.predict import preload


@dataclass
class GraphResult:
    """What the graph made: the blocks' products and the profile of its tasks."""

    times: BlockTimes = field(default_factory=BlockTimes)
    polygons: list[bytes] = field(default_factory=list)
    preview: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    valid_pixels: int = 0
    """Counted over the blocks tiled by this run."""
    pre_valid_pixels: int = 0
    """The same for the pre-event scene."""
    tile_spans: list[tuple[float, float]] = field(default_factory=list)
    map_spans: list[tuple[float, float]] = field(default_factory=list)

    def overlap(self) -> dict[str, float]:
        """Seconds during which some tiling task ran, some mapping task ran, and both."""
        tiles, maps = _union(self.tile_spans), _union(self.map_spans)
        both = sum(max(0.0, min(b, d) - max(a, c)) for a, b in tiles for c, d in maps)
        return {"tiling_s": sum(b - a for a, b in tiles),
                "mapping_s": sum(b - a for a, b in maps), "both_s": both}


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def tile_task(row: int, col: int, spec: SceneSpec, store: str) -> tuple[int, tuple[float, float]]:
    """``tile_block`` with its wall-clock span: (valid pixels, (start, end))."""
    start = time.time()
    return tile_block(row, col, spec, store), (start, time.time())


def run_graph(client: Client, plan: Plan | None, job: BlockJob,
              pre: Plan | None = None) -> GraphResult:
    """Tile the plan's blocks (none when ``plan`` is None; ``pre``: the pre-event scene's too)
    and map every block of the scene, as one graph; returns the products. On any failure the
    graph is cancelled and the error raised; the store keeps every block finished so far
    (flags), so a re-run resumes."""
    grid = job.grid
    todo = set(plan.todo) if plan is not None else set()
    resources = model_resources(client)
    pre_todo = set(pre.todo) if pre is not None else set()
    tiling: dict[tuple[int, int], Future] = {}
    pre_tiling: dict[tuple[int, int], Future] = {}
    mapping: list[Future] = []

    def tile_row(r: int) -> None:
        for c in range(grid.n_block_cols):
            if (r, c) in todo:
                tiling[r, c] = client.submit(tile_task, r, c, plan.spec, str(plan.store),
                                             pure=False)
            if (r, c) in pre_todo:
                pre_tiling[r, c] = client.submit(tile_task, r, c, pre.spec, str(pre.store),
                                                 pure=False)

    # Submission order is Dask's priority: the blocks of row r are mapped as soon as rows
    # r - 1 .. r + 1 are tiled, before the tiling of the rows below them.
    tile_row(0)
    for r in range(grid.n_block_rows):
        tile_row(r + 1)
        mapping += [client.submit(map_block, job, r, c,
                                  *[tiling[n] for n in neighbours(r, c) if n in tiling],
                                  *([pre_tiling[r, c]] if (r, c) in pre_tiling else []),
                                  pure=False, resources=resources)
                    for c in range(grid.n_block_cols)]
    result = GraphResult()
    pre_futures = set(pre_tiling.values())
    futures = [*tiling.values(), *pre_tiling.values(), *mapping]
    try:
        with tqdm(total=len(futures), unit="task", desc="tile+map", file=sys.stderr) as bar:
            for future in as_completed(futures):
                _collect(result, future.result(), future in pre_futures)
                bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    return result


def _collect(result: GraphResult, done: BlockResult | tuple[int, tuple[float, float]],
             pre: bool = False) -> None:
    if pre:
        result.pre_valid_pixels += done[0]
        result.tile_spans.append(done[1])
    elif isinstance(done, BlockResult):
        result.times += done.times
        result.polygons.extend(done.polygons)
        result.preview[done.row, done.col] = done.preview
        result.map_spans.append(done.span)
    else:
        pixels, span = done
        result.valid_pixels += pixels
        result.tile_spans.append(span)


def preload_models(client: Client, model_dir: str, threads: int | None,
                   model_key: str) -> list[Future]:
    """One task per worker that imports TensorFlow and loads the model while the scene is being
    tiled, so the first blocks do not wait for it (workers that join later load on first use)."""
    path = str(Path(model_dir).resolve())
    return [client.submit(preload, path, threads, model_key, workers=[w],
                          allow_other_workers=False, pure=False)
            for w in client.scheduler_info()["workers"]]


def preload_seconds(client: Client, loading: list[Future]) -> float:
    """Seconds the finished preloads took. Preloading is only a head start: a preload pinned to
    a worker that died can never run, so the unfinished ones are cancelled, never waited for
    (the block tasks load the model themselves and report any error of the bundle)."""
    client.cancel([f for f in loading if f.status != "finished"])
    return sum(f.result() for f in loading if f.status == "finished")
