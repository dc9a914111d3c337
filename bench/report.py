"""BENCHMARKS.md from the results of one bench run."""

from pathlib import Path


def _f(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


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
        f"| infer stage alone (predicted tiles / infer time) | "
        f"{_f(p['infer_stage_tiles_per_s'])} tiles/s |",
        f"| seam compute ratio (halo pixels counted) | {p['compute_ratio']:.3f} |",
        "",
        "Stages of the pipeline run (s): " + ", ".join(
            f"{k[:-2]} {_f(v)}" for k, v in p["stages_s"].items()) + ".",
        "",
        "## Scale: memory against scene size (whole job, all processes)",
        "",
        "| scene | tiles | wall (s) | tiles/s | pipeline / ceiling | peak RSS, all (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["scale"]:
        lines.append(f"| {s['size']}^2 | {s['tiles']:,} | {_f(s['wall_s'])} | "
                     f"{_f(s['tiles_per_s'])} | {s['ratio_to_ceiling']:.2f} | "
                     f"{s['peak_rss_gib']:.2f} |")
    lines += ["", "## Training throughput (jobs.train, batch 16, last epoch)", "",
              "| strategy | samples/s | wall (s) |", "|---|---|---|"]
    for name, t in r["training"].items():
        lines.append(f"| {name} | {_f(t['samples_per_s'])} | {_f(t['wall_s'])} |")
    if "device" in r:
        lines += ["", "## GPU", ""]
        lines += [f"- {k}: {v}" for k, v in r["device"].items()]
    path.write_text("\n".join(lines) + "\n")
