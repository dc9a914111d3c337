"""Tile a scene into a store with Dask: one task per 1024-px block (one shard), resumable.

``tile_scene`` is the one entry point (``python -m jobs.tile`` and inference call it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from distributed import Client, as_completed

from common import provenance
from common.errors import InputError, StoreError, reaches_client
from tiler.blocks import read_block_counts
from tiler.grid import Grid
from tiler.sources import SceneSpec, resolve_input
from tiler.store import (
    create_store,
    is_store,
    mark_complete,
    mask_shares,
    read_tiled,
    remove_store,
    store_attrs,
    store_identity,
    write_block,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileResult:
    store: Path
    blocks_total: int
    blocks_written: int
    already_complete: bool
    valid_pixels: int  # counted over the blocks written by this run


@reaches_client
def tile_block(row: int, col: int, spec: SceneSpec, store: str) -> int:
    """The Dask task: read, convert, mask and write block (row, col) (with its mask counts);
    returns its valid pixel count."""
    image, valid, counts = read_block_counts(spec, row, col)
    write_block(store, spec.grid, row, col, image, valid, counts)
    return int(valid.sum())


def _same_input(store: Path, spec: SceneSpec) -> bool:
    return provenance.matches(store_attrs(store).get(provenance.ATTRIBUTE), spec.identity())


def _other_input(store: Path, spec: SceneSpec) -> StoreError:
    """The refusal of a store made from something else, saying what changed."""
    old = store_identity(store)
    changed = provenance.differences(old.record, spec.identity().record)
    what = "; ".join(changed) if changed else f"another input ({old.record.get('source')})"
    return StoreError(f"{store}: the store was made from other inputs or settings ({what}); "
                      "pass --overwrite to replace it")


@dataclass(frozen=True)
class Plan:
    """What a run has to do on a store: the blocks still to write (empty when complete)."""

    spec: SceneSpec
    store: Path
    todo: tuple[tuple[int, int], ...]
    created: bool
    already_complete: bool


def plan_store(spec: SceneSpec, store: str | Path, *, overwrite: bool = False,
               replace_other: bool = False) -> Plan:
    """Create the store, or check that an existing one was made from the same identity
    (``SceneSpec.identity``) and list the blocks whose ``tiled`` flag is still 0. A store made
    from anything else raises StoreError saying what changed, unless ``overwrite`` (the user
    asked) or ``replace_other`` (the store is the job's own working store): it is then deleted
    and made again."""
    store = Path(store).resolve()
    identity = spec.identity()
    if store.exists() and overwrite:
        remove_store(store)
    created = False
    if store.exists():
        if not is_store(store):
            raise StoreError(f"{store}: exists and is not a tile store")
        if not _same_input(store, spec):
            if not replace_other:
                raise _other_input(store, spec)
            remove_store(store)
    if store.exists():
        if store_attrs(store).get("complete"):
            return Plan(spec, store, (), False, True)
    else:
        create_store(store, spec.grid, spec.source_record(), spec.convention, identity)
        created = True
    tiled = read_tiled(store)
    todo = tuple((r, c) for r, c in spec.grid.blocks() if not tiled[r, c])
    return Plan(spec, store, todo, created, False)


def run_plan(plan: Plan, client: Client | None, *, progress: bool = True) -> TileResult:
    """Write the plan's blocks on ``client`` (one task per block), then mark the store
    complete. On any failure the finished blocks keep their flags: a re-run resumes."""
    total = len(plan.spec.grid.blocks())
    if plan.already_complete:
        return TileResult(plan.store, total, 0, True, 0)
    rows, cols = [r for r, _ in plan.todo], [c for _, c in plan.todo]
    futures = client.map(tile_block, rows, cols, spec=plan.spec, store=str(plan.store),
                         pure=False)
    valid_pixels = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - len(plan.todo), unit="block", desc="tiling")
    try:
        for fut in as_completed(futures):
            valid_pixels += fut.result()
            if bar is not None:
                bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if bar is not None:
            bar.close()
    return finish_plan(plan, valid_pixels)


def finish_plan(plan: Plan, valid_pixels: int) -> TileResult:
    """Once every block of the plan is written (``valid_pixels`` counted over them): mark the
    store complete, or, when a store this run created holds no valid pixel at all, delete it
    and raise InputError (an empty scene is bad input, not an empty map)."""
    total = len(plan.spec.grid.blocks())
    if plan.already_complete:
        return TileResult(plan.store, total, 0, True, 0)
    if plan.created and valid_pixels == 0:
        remove_store(plan.store)
        raise InputError(f"{plan.spec.source}: the scene is empty (no valid pixel in any block)")
    mark_complete(plan.store)
    return TileResult(plan.store, total, len(plan.todo), False, valid_pixels)


def tile_scene(input_path: str | Path, store: str | Path, *, client: Client,
               dem: str | Path | None = None, offset: float | None = None,
               quantification: float | None = None, convention: str | None = None,
               mask: str | Path | None = None, mask_values: Sequence[float] | None = None,
               grid: Grid | None = None, overwrite: bool = False,
               progress: bool = True) -> TileResult:
    """Tile ``input_path`` (stacked GeoTIFF, band folder or SAFE product; ``dem`` for the
    latter two) into the Zarr store ``store`` on ``client``'s cluster: the one call for jobs.

    A complete store from the same input is left alone; an incomplete one is resumed (only the
    blocks whose ``tiled`` flag is 0 are written); a store from another input raises
    StoreError unless ``overwrite``. Bad input raises InputError before any store exists.
    ``mask``, ``mask_values`` and ``grid``: see ``tiler.sources.resolve_input``.
    """
    spec = resolve_input(input_path, dem, offset=offset, quantification=quantification,
                         convention=convention, mask=mask, mask_values=mask_values, grid=grid)
    plan = plan_store(spec, store, overwrite=overwrite)
    return run_plan(plan, client, progress=progress)


def tile_input_summary(result: TileResult) -> str:
    if result.already_complete:
        return f"{result.store}: already complete ({result.blocks_total} blocks): nothing to do"
    text = (f"{result.store}: wrote {result.blocks_written} of {result.blocks_total} blocks "
            f"({result.valid_pixels} valid pixels)")
    m = mask_shares(result.store)
    if m and m["kind"]:
        text += (f"; masked by {m['kind']} {m['path']}: {100 * m['masked_share']:.1f}% of the "
                 f"scene excluded")
    return text


__all__ = ["Plan", "TileResult", "finish_plan", "plan_store", "run_plan", "tile_block",
           "tile_scene", "tile_input_summary"]
