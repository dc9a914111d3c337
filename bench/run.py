"""python -m bench.run [--quick]: the scene pipeline against the bare model, memory against
scene size, and training throughput, measured in ONE run on this machine.

Writes BENCHMARKS.md (table, machine, versions, date) and bench/results.json. Every job is run
as a user runs it (`python -m jobs.NAME` in a subprocess, on the default LocalCluster), and its
peak memory is summed over its whole process tree.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import psutil

from bench.procs import REPO, check, env, run_measured
from bench.report import write_markdown
from bench.training import bench_training, fresh, train_cmd

TILE = 128


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="2048^2 pipeline scene, no 10980^2 granule (under 10 min on 2 cores)")
    p.add_argument("--model", type=Path, help="a trained bundle for the pipeline runs "
                   "(default: the bundle the default-strategy training run writes)")
    p.add_argument("--workdir", type=Path, default=REPO / "bench-run")
    p.add_argument("--out", type=Path, default=REPO,
                   help="where BENCHMARKS.md and bench/results.json go")
    p.add_argument("--device-report", action="store_true",
                   help="also measure on the GPU (float32, mixed precision, XLA)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test's config
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> dict:
    if args.tiny:
        return {"n_train": 32, "n_valid": 16, "width": 4, "depth": 2, "train_epochs": 1,
                "train_steps": 2, "pipeline": 384, "scale": [256, 384], "ceiling_s": 1.0,
                "wide_width": 6}
    # wide_width: a second model, of the Landslide4Sense baseline U-Net's size (width 32,
    # about 6 GFLOP a tile), trained only long enough to predict something: how the pipeline's
    # ratio to its ceiling grows with the model's cost.
    full = {"n_train": 256, "n_valid": 64, "width": 8, "depth": 4, "train_epochs": 2,
            "train_steps": 12, "pipeline": 4096, "scale": [1024, 4096, 10980],
            "ceiling_s": 10.0, "wide_width": 32}
    if args.quick:
        full.update(pipeline=2048, scale=[1024, 4096], wide_width=None)
    return full


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def versions() -> dict:
    import dask
    import keras
    import rasterio
    import tensorflow as tf
    import zarr

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "dask": dask.__version__,
            "zarr": zarr.__version__, "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__}


def bench_ceiling(cfg: dict, model_dir: Path) -> dict:
    from bench.ceiling import flops_per_tile, matmul_gflops, model_tiles_per_second
    from unet.bundle import load_bundle

    model, _ = load_bundle(model_dir)
    peak = matmul_gflops(seconds=cfg["ceiling_s"] / 2)
    tiles = model_tiles_per_second(model, seconds=cfg["ceiling_s"])
    flops = flops_per_tile(model)
    return {"tiles_per_s": tiles, "gflop_per_tile": flops / 1e9,
            "achieved_gflops": tiles * flops / 1e9, "matmul_gflops": peak,
            "fraction_of_matmul": tiles * flops / 1e9 / peak}


def scene_path(size: int, work: Path) -> Path:
    """The synthetic size x size scene GeoTIFF (made once, seed 11)."""
    from simulator.scene import write_scene

    scene = work / f"scene-{size}"
    if not (scene / "truth.tif").exists():
        write_scene(scene, size, size, seed=11)
    return scene / "scene.tif"


def bench_scene(size: int, model_dir: Path, work: Path, cluster: Path | None = None,
                name: str = "map") -> dict:
    """A synthetic size x size scene through the whole job (GeoTIFF in, COGs and polygons out),
    on the default LocalCluster unless `cluster` (a cluster.yaml) is given."""

    out = work / f"{name}-{size}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / f"{name}-{size}.log"
    cmd = [sys.executable, "-m", "jobs.infer", str(scene_path(size, work)),
           "--model", str(model_dir), "--out", str(out)]
    m = run_measured(cmd + (["--cluster", str(cluster)] if cluster else []), env=env(),
                     cwd=REPO, log=log)
    check(m, f"jobs.infer on {size}^2", log)
    report = json.loads((out / "report.json").read_text())
    tiles = (-(-size // TILE)) ** 2
    stages = report["timings"]
    return {"size": size, "tiles": tiles, "wall_s": m.wall_s, "tiles_per_s": tiles / m.wall_s,
            "peak_rss_gib": m.peak_rss_bytes / 2**30, "stages_s": stages,
            "outside_job_s": m.wall_s - stages["total_s"],
            "infer_worker_s": report["infer_worker_s"], "overlap_s": report["overlap_s"],
            "compute_ratio": report["compute_ratio"],
            "blocks_stage_tiles_per_s": report["tiles_predicted"] / stages["blocks_s"]}


def bench_warm_cluster(size: int, model_dir: Path, work: Path) -> dict:
    """The same scene job twice on one long-lived cluster: the second finds TensorFlow imported
    and the model loaded (what each scene after the first costs an analyst with many)."""
    from tests.clusters import running_cluster

    with running_cluster(work, env(), REPO) as config:
        first = bench_scene(size, model_dir, work, config, name="warm-first")
        second = bench_scene(size, model_dir, work, config, name="warm-second")
    second["first_wall_s"] = first["wall_s"]
    return second


def bench_wide_model(cfg: dict, work: Path) -> dict:
    """Train the wide model briefly, then its ceiling and the pipeline scene with it."""
    width = cfg["wide_width"]
    out = fresh(work / f"train-width{width}")
    log = work / f"train-width{width}.log"
    m = run_measured(train_cmd({**cfg, "width": width}, work / "patches", out, "default")
                     + ["--seed", "0"], env=env(), cwd=REPO, log=log)
    check(m, f"jobs.train --base-width {width}", log)
    ceiling = bench_ceiling(cfg, out)
    scene = bench_scene(cfg["pipeline"], out, work, name=f"map-width{width}")
    scene["ratio_to_ceiling"] = scene["tiles_per_s"] / ceiling["tiles_per_s"]
    return {"width": width, "model": str(out), "ceiling": ceiling, "pipeline": scene}


def device_report() -> dict:
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return {"skipped": "no GPU visible to TensorFlow on this machine"}
    from bench.device import gpu_figures

    return gpu_figures()


def save_json(results: dict, out: Path) -> None:
    """bench/results.json, rewritten as sections finish (a long run that fails keeps them)."""
    (out / "bench").mkdir(parents=True, exist_ok=True)
    (out / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = settings(args)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    results = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
               "machine": machine(), "versions": versions(), "settings": cfg}
    print("training throughput ...", flush=True)
    results["training"] = bench_training(cfg, work)
    model_dir = args.model or work / "train-default"
    results["model"] = str(model_dir)
    print("model ceiling ...", flush=True)
    results["ceiling"] = bench_ceiling(cfg, model_dir)
    scenes = {}
    for size in sorted({cfg["pipeline"], *cfg["scale"]}):
        print(f"scene {size}^2 through jobs.infer ...", flush=True)
        scenes[size] = bench_scene(size, model_dir, work)
        scenes[size]["ratio_to_ceiling"] = (scenes[size]["tiles_per_s"]
                                            / results["ceiling"]["tiles_per_s"])
        results["scenes"] = list(scenes.values())
        save_json(results, args.out)
    results["pipeline"] = scenes[cfg["pipeline"]]
    print(f"scene {cfg['pipeline']}^2 twice on a long-lived cluster ...", flush=True)
    warm = bench_warm_cluster(cfg["pipeline"], model_dir, work)
    warm["ratio_to_ceiling"] = warm["tiles_per_s"] / results["ceiling"]["tiles_per_s"]
    results["warm_cluster"] = warm
    results["scale"] = [scenes[s] for s in cfg["scale"]]
    save_json(results, args.out)
    if cfg["wide_width"]:
        print(f"width-{cfg['wide_width']} model: training, ceiling, pipeline ...", flush=True)
        results["wide_model"] = bench_wide_model(cfg, work)
    if args.device_report:
        results["device"] = device_report()
    save_json(results, args.out)
    write_markdown(results, args.out / "BENCHMARKS.md")
    print(f"wrote {args.out / 'BENCHMARKS.md'} and {args.out / 'bench' / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
