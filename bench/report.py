"""BENCHMARKS.md from the results of one bench run."""

from pathlib import Path

from bench.training import training_markdown


def _f(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


STAGES = {
    "setup_s": "setup: bundle.json, input checks, store plan",
    "cluster_start_s": "start the LocalCluster",
    "blocks_s": "tile and map every block, in one Dask graph (wall)",
    "cluster_close_s": "close the cluster",
    "polygons_rasters_s": "merge the blocks' polygons; probability raster, burnt mask",
    "write_s": "write: COGs, GeoPackage, preview",
}
WORKER = {
    "load_s": "import TensorFlow, load the model (per worker, preloaded while the scene is tiled)",
    "read_s": "read block + halo from Zarr",
    "prepare_s": "normalise",
    "model_s": "the network",
    "write_s": "write probabilities to Zarr",
    "products_s": "the block's polygons and preview pixels",
}


def _profile(p: dict, c: dict, title: str) -> list[str]:
    """The job's own stage clock, the process around it, and the worker-side split of infer."""
    wall = p["wall_s"]
    model_alone = p["tiles"] * p["compute_ratio"] / c["tiles_per_s"]
    lines = ["", f"### {title} ({p['size']}^2, {_f(wall)} s wall)", "",
             "| part | s | share of wall |", "|---|---|---|",
             f"| process start, imports, exit (outside the job's clock) | "
             f"{_f(p['outside_job_s'])} | {p['outside_job_s'] / wall:.0%} |"]
    for key, label in STAGES.items():
        if key in p["stages_s"]:
            v = p["stages_s"][key]
            lines.append(f"| {label} | {_f(v)} | {v / wall:.0%} |")
    lines += ["", "Inside the mapping tasks, summed over the workers' tasks (several run at once, "
              "so the sum can exceed the stage's wall time):", "", "| part | s |", "|---|---|"]
    lines += [f"| {label} | {_f(p['infer_worker_s'][k], 2)} |" for k, label in WORKER.items()
              if k in p["infer_worker_s"]]
    if "overlap_s" in p:
        o = p["overlap_s"]
        lines += ["", f"Tiling tasks ran during {_f(o['tiling_s'])} s, mapping tasks during "
                  f"{_f(o['mapping_s'])} s, both at once during {_f(o['both_s'])} s."]
    lines += ["", f"The model alone (the ceiling's rate, seam overhead included) would take "
              f"{_f(model_alone)} s of the {_f(wall)} s.", ""]
    return lines


def _warm(r: dict, c: dict) -> list[str]:
    if "warm_cluster" not in r:
        return []
    w = r["warm_cluster"]
    return [
        "## The same scene on a long-lived cluster", "",
        f"A `dask scheduler` and one `dask worker` (all cores, `--resources MODEL=2`) kept "
        f"running; `jobs.infer --cluster` with `address:` run twice on the {w['size']}^2 scene. "
        f"The first run took {_f(w['first_wall_s'])} s; the second found TensorFlow imported "
        f"and the model loaded: **{_f(w['tiles_per_s'])} tiles/s in {_f(w['wall_s'])} s, "
        f"pipeline / ceiling {w['ratio_to_ceiling']:.2f}**. (Its peak memory counts only the "
        "job's client: the workers are not its children.)",
        *_profile(w, c, "Where the time of the second run goes"),
    ]


def _wide(r: dict) -> list[str]:
    if "wide_model" not in r:
        return []
    w, narrow = r["wide_model"], r["ceiling"]
    wc, wp, p = w["ceiling"], w["pipeline"], r["pipeline"]
    return [
        "", f"## A model of the Landslide4Sense baseline's size (width {w['width']})", "",
        "The same job with a wider U-Net, trained only briefly (its maps are not the point): "
        "the work around the model stays the same while the model's cost grows.", "",
        "| model | GFLOP / tile | ceiling (tiles/s) | whole job (tiles/s) | pipeline / ceiling |",
        "|---|---|---|---|---|",
        f"| production (width {r['settings']['width']}) | {_f(narrow['gflop_per_tile'], 2)} | "
        f"{_f(narrow['tiles_per_s'])} | {_f(p['tiles_per_s'])} | {p['ratio_to_ceiling']:.2f} |",
        f"| width {w['width']} | {_f(wc['gflop_per_tile'], 2)} | {_f(wc['tiles_per_s'])} | "
        f"{_f(wp['tiles_per_s'])} | {wp['ratio_to_ceiling']:.2f} |",
        *_profile(wp, wc, f"Where the time of the width-{w['width']} run goes"),
    ]


def write_markdown(r: dict, path: Path) -> None:
    c, p = r["ceiling"], r["pipeline"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `python -m bench.run{' --quick' if r['mode'] == 'quick' else ''}` on "
        f"{r['date']} ({r['mode']} run), all figures from this one run on one machine.",
        "",
        f"Machine: {r['machine']['cores']} cores ({r['machine']['cpu']}), "
        f"{r['machine']['memory_gib']} GiB, {r['machine']['platform']}, "
        f"Python {r['machine']['python']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".",
        f"Model: `{r['model']}` ({_f(c['gflop_per_tile'], 2)} GFLOP per 128x128 tile).",
        "",
        "## Model ceiling and pipeline",
        "",
        "| what | figure |",
        "|---|---|",
        f"| float32 matmul 2048^2 (machine peak) | {_f(c['matmul_gflops'])} GFLOP/s |",
        f"| bare model, batch 64, tiles in memory | {_f(c['tiles_per_s'])} tiles/s, "
        f"{_f(c['achieved_gflops'])} GFLOP/s ({_f(100 * c['fraction_of_matmul'])}% of matmul) |",
        f"| whole job on a {p['size']}^2 scene (GeoTIFF in, COGs + polygons out) | "
        f"{_f(p['tiles_per_s'])} tiles/s in {_f(p['wall_s'])} s |",
        f"| **pipeline / ceiling** | **{p['ratio_to_ceiling']:.2f}** |",
        f"| tile+map stage alone (predicted tiles / its wall time) | "
        f"{_f(p['blocks_stage_tiles_per_s'])} tiles/s |",
        f"| seam compute ratio (halo pixels counted) | {p['compute_ratio']:.3f} |",
        "",
        *_profile(p, c, "Where the time of the pipeline run goes"),
        *_warm(r, c),
        "## Scale: memory against scene size (whole job, all processes)",
        "",
        "| scene | tiles | wall (s) | tiles/s | pipeline / ceiling | peak RSS, all (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["scale"]:
        lines.append(f"| {s['size']}^2 | {s['tiles']:,} | {_f(s['wall_s'])} | "
                     f"{_f(s['tiles_per_s'])} | {s['ratio_to_ceiling']:.2f} | "
                     f"{s['peak_rss_gib']:.2f} |")
    lines += training_markdown(r)
    lines += _wide(r)
    if "device" in r:
        lines += ["", "## GPU", ""]
        lines += [f"- {k}: {v}" for k, v in r["device"].items()]
    path.write_text("\n".join(lines) + "\n")
