"""BENCHMARKS.md from the results of one bench run."""

from pathlib import Path

from bench.training import generalisation_markdown, training_markdown


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


TARGETS = {32: 0.85, 16: 0.6, 8: 0.35}
"""Whole job / bare model wanted at 4096^2, by model width (issue 12)."""
FLOOR = {"process_s": "start Python, import the job", "cluster_s": "start and stop the cluster",
         "load_s": "import TensorFlow, load the model", "read_s": "read every band once",
         "write_s": "write the two COGs"}


def _widths(r: dict) -> list[str]:
    rows = r["widths"]
    size = rows[0]["pipeline"]["size"]
    lines = [
        f"## The scene job against its bare model ({size}^2, GeoTIFF in, every output out)", "",
        "The bare model: batches of 64 normalised tiles already in memory, a compiled call, all "
        "cores, measured just before and just after the job (the better of the two counts). "
        "The job: `python -m jobs.infer` as a whole process, from start to exit. The floor: "
        "each thing the job cannot avoid done once with nothing around it (fixed parts below, "
        "plus the model at the bare rate); its ratio is the best this design could show here.",
        "",
        "| model | GFLOP / tile | bare model before / after (tiles/s) | whole job (s) | "
        "**job / bare model** | wanted | floor (s) | floor's ratio | job / floor |",
        "|---|---|---|---|---|---|---|---|---|"]
    for w in rows:
        c, p = w["ceiling"], w["pipeline"]
        want = TARGETS.get(w["width"])
        lines.append(
            f"| width {w['width']} | {_f(c['gflop_per_tile'], 2)} | "
            f"{_f(w['ceiling_before']['tiles_per_s'])} / {_f(w['ceiling_after']['tiles_per_s'])}"
            f" | {_f(p['wall_s'])} | **{p['ratio_to_ceiling']:.2f}** | "
            f"{f'>= {want}' if want else '-'} | {_f(p['floor_s'])} | {p['floor_ratio']:.2f} | "
            f"{p['job_over_floor']:.2f} |")
    parts = rows[0]["pipeline"]["floor_parts_s"]
    lines += ["", "The floor's fixed parts, each measured in a fresh process:", "",
              "| part | s |", "|---|---|"]
    lines += [f"| {FLOOR.get(k, k)} | {_f(v)} |" for k, v in parts.items()]
    for w in rows:
        lines += _profile(w["pipeline"], w["ceiling"],
                          f"Where the time of the width-{w['width']} job goes")
    return lines


def _granule(r: dict) -> list[str]:
    if "granule" not in r:
        return []
    g = r["granule"]
    ok = "yes" if g["wall_s"] <= 150 and g["peak_rss_gib"] <= 2.5 else "no"
    return [
        "", f"## A whole granule: {g['size']}^2 SAFE product (13 JP2 bands + DEM) to COGs, "
        "GeoPackage and preview", "",
        "| wall (s) | peak RSS, all processes (GiB) | job / bare model | floor (s) | "
        "wanted: <= 150 s, <= 2.5 GiB |", "|---|---|---|---|---|",
        f"| {_f(g['wall_s'])} | {g['peak_rss_gib']:.2f} | {g['ratio_to_ceiling']:.2f} | "
        f"{_f(g['floor_s'])} | {ok} |",
        *_profile(g, r["ceiling"], "Where the time of the granule goes"),
    ]


def _event(r: dict) -> list[str]:
    if "event" not in r:
        return []
    e = r["event"]
    return ["", f"## An event: two {e['size']}^2 scenes in one submission", "",
            "| one scene (s) | two scenes, one submission (s) | ratio (wanted <= 1.9) | "
            "peak RSS one / two (GiB) |", "|---|---|---|---|",
            f"| {_f(e['one_wall_s'])} | {_f(e['two_wall_s'])} | {e['ratio']:.2f} | "
            f"{e['one_peak_rss_gib']:.2f} / {e['two_peak_rss_gib']:.2f} |"]


def write_markdown(r: dict, path: Path) -> None:
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
        f"Production model: `{r['model']}`.",
        "",
        *_widths(r),
        *_granule(r),
        *_warm(r, r["ceiling"]),
        "## Scale: memory against scene size (whole job, all processes, production model)",
        "",
        "| scene | tiles | wall (s) | tiles/s | job / bare model | peak RSS, all (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    scale = [*r["scale"], *([{**r["granule"], "size": f"{r['granule']['size']} (SAFE)"}]
                            if "granule" in r else [])]
    for s in scale:
        lines.append(f"| {s['size']}^2 | {s['tiles']:,} | {_f(s['wall_s'])} | "
                     f"{_f(s['tiles_per_s'])} | {s['ratio_to_ceiling']:.2f} | "
                     f"{s['peak_rss_gib']:.2f} |")
    lines += _event(r)
    lines += training_markdown(r)
    if "generalisation" in r:
        lines += generalisation_markdown(r)
    if "device" in r:
        lines += ["", "## GPU", ""]
        lines += [f"- {k}: {v}" for k, v in r["device"].items()]
    path.write_text("\n".join(lines) + "\n")
