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
from bench.training import bench_generalisation, bench_training, fresh, train_cmd

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
    """widths: the models the pipeline is measured with (the first is the production one,
    trained by the default-strategy training run; the others briefly, for their cost only);
    granule: the side of the SAFE product of the scale section (None: not measured); event:
    the side of each of the two scenes of the event measurement."""
    if args.tiny:
        return {"n_train": 32, "n_valid": 16, "width": 4, "depth": 2, "train_epochs": 1,
                "train_steps": 2, "pipeline": 384, "scale": [256, 384], "ceiling_s": 1.0,
                "widths": [4, 6], "granule": None, "event": 256,
                "generalisation": {"n_train": 32, "n_valid": 16, "epochs": 1, "widths": [4],
                                   "scene": 256}}
    full = {"n_train": 256, "n_valid": 64, "width": 8, "depth": 4, "train_epochs": 2,
            "train_steps": 12, "pipeline": 4096, "scale": [1024, 4096], "ceiling_s": 10.0,
            "widths": [8, 16, 32], "granule": 10980, "event": 2048, "train_rounds": 2,
            # width 32 left out of the generalisation sweep: over 15 min of training here
            "generalisation": {"widths": [8, 16]}}
    if args.quick:
        full.update(pipeline=2048, widths=[8], granule=None, event=1024,
                    generalisation={"widths": [8], "epochs": 3, "n_train": 256,
                                    "n_valid": 64, "scene": 1024})  # --quick stays < 10 min
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


def scene_path(size: int, work: Path, seed: int = 11) -> Path:
    """The synthetic size x size scene GeoTIFF (made once per seed)."""
    from simulator.scene import write_scene

    scene = work / (f"scene-{size}" if seed == 11 else f"scene-{size}-seed{seed}")
    if not (scene / "truth.tif").exists():
        write_scene(scene, size, size, seed=seed)
    return scene / "scene.tif"


def bench_scene(size: int, model_dir: Path, work: Path, cluster: Path | None = None,
                name: str = "map", scene: Path | list[Path] | None = None,
                dem: Path | None = None, tiles_factor: int = 1) -> dict:
    """A size x size scene (default: the synthetic GeoTIFF; a SAFE product with ``dem``; a
    list for an event) through the whole job, as a user runs it, on the default LocalCluster
    unless ``cluster`` (a cluster.yaml) is given."""
    out = work / f"{name}-{size}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / f"{name}-{size}.log"
    scenes = scene if isinstance(scene, list) else [scene or scene_path(size, work)]
    cmd = [sys.executable, "-m", "jobs.infer", *map(str, scenes), "--model", str(model_dir),
           "--out", str(out)]
    cmd += ["--dem", str(dem)] if dem else []
    m = run_measured(cmd + (["--cluster", str(cluster)] if cluster else []), env=env(),
                     cwd=REPO, log=log)
    check(m, f"jobs.infer on {size}^2", log)
    tiles = (-(-size // TILE)) ** 2 * tiles_factor
    result = {"size": size, "tiles": tiles, "wall_s": m.wall_s, "tiles_per_s": tiles / m.wall_s,
              "peak_rss_gib": m.peak_rss_bytes / 2**30}
    if len(scenes) > 1:
        return result
    report = json.loads((out / "report.json").read_text())
    stages = report["timings"]
    return {**result, "stages_s": stages, "outside_job_s": m.wall_s - stages["total_s"],
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


def train_width(cfg: dict, width: int, work: Path) -> Path:
    """A model of ``width`` trained only long enough to predict something: its cost is what the
    pipeline figures need, not its maps."""
    out = fresh(work / f"train-width{width}")
    log = work / f"train-width{width}.log"
    m = run_measured(train_cmd({**cfg, "width": width}, work / "patches", out, "default")
                     + ["--seed", "0"], env=env(), cwd=REPO, log=log)
    check(m, f"jobs.train --base-width {width}", log)
    return out


def floor_parts(scene: Path, model_dir: Path, work: Path, dem: Path | None = None) -> dict:
    """bench.floor's parts for a scene, measured in their own processes."""
    cmd = [sys.executable, "-m", "bench.floor", str(scene), str(model_dir)]
    log = work / f"floor-{scene.parent.name}.log"
    m = run_measured(cmd + (["--dem", str(dem)] if dem else []), env=env(), cwd=REPO, log=log)
    check(m, "bench.floor", log)
    return json.loads([line for line in m.output.splitlines() if line.startswith("{")][-1])


def with_floor(scene: dict, ceiling: dict, parts: dict) -> dict:
    """The scene's floor (its fixed parts plus the model at its best) beside the job."""
    model_s = scene["tiles"] * scene["compute_ratio"] / ceiling["tiles_per_s"]
    floor_s = sum(parts.values()) + model_s
    return {**scene, "floor_parts_s": parts, "floor_model_s": model_s, "floor_s": floor_s,
            "floor_ratio": model_s / floor_s, "job_over_floor": scene["wall_s"] / floor_s}


def bench_width(cfg: dict, width: int, model_dir: Path, work: Path, parts: dict) -> dict:
    """The bare model before and after the job, the job on the pipeline scene, its floor."""
    before = bench_ceiling(cfg, model_dir)
    scene = bench_scene(cfg["pipeline"], model_dir, work, name=f"map-width{width}")
    after = bench_ceiling(cfg, model_dir)
    best = max((before, after), key=lambda c: c["tiles_per_s"])
    scene["ratio_to_ceiling"] = scene["tiles_per_s"] / best["tiles_per_s"]
    return {"width": width, "model": str(model_dir), "ceiling": best,
            "ceiling_before": before, "ceiling_after": after,
            "pipeline": with_floor(scene, best, parts)}


def safe_scene(size: int, work: Path) -> tuple[Path, Path]:
    """A synthetic granule as a SAFE product (13 JP2 bands) and its DEM, made once."""
    out = work / f"safe-{size}"
    if not (out / "dem.tif").exists():
        shutil.rmtree(out, ignore_errors=True)
        log = work / f"synth-safe-{size}.log"
        m = run_measured([sys.executable, "-m", "jobs.synth", "scene", str(out), "--height",
                          str(size), "--width", str(size), "--seed", "7"], env=env(), cwd=REPO,
                         log=log)
        check(m, f"jobs.synth scene {size}", log)
    return next(out.glob("*.SAFE")), out / "dem.tif"


def bench_granule(size: int, model_dir: Path, work: Path, ceiling: dict) -> dict:
    safe, dem = safe_scene(size, work)
    scene = bench_scene(size, model_dir, work, name="granule", scene=safe, dem=dem)
    scene["ratio_to_ceiling"] = scene["tiles_per_s"] / ceiling["tiles_per_s"]
    return with_floor(scene, ceiling, floor_parts(safe, model_dir, work, dem))


def bench_event(size: int, model_dir: Path, work: Path) -> dict:
    """Two scenes in one submission against one scene alone (same model, same cluster kind)."""
    names = work / "event-scenes"
    names.mkdir(exist_ok=True)
    a, b = names / "A.tif", names / "B.tif"  # scene names are file names: one folder each
    for link, seed in ((a, 11), (b, 12)):
        link.unlink(missing_ok=True)
        link.symlink_to(scene_path(size, work, seed=seed))
    one = bench_scene(size, model_dir, work, name="event-one", scene=a)
    both = bench_scene(size, model_dir, work, name="event-two", scene=[a, b], tiles_factor=2)
    return {"size": size, "one_wall_s": one["wall_s"], "two_wall_s": both["wall_s"],
            "ratio": both["wall_s"] / one["wall_s"], "one_peak_rss_gib": one["peak_rss_gib"],
            "two_peak_rss_gib": both["peak_rss_gib"]}


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
    print("generalisation (widths on the other world) ...", flush=True)
    results["generalisation"] = bench_generalisation(cfg, work)
    save_json(results, args.out)
    model_dir = args.model or work / "train-default"
    results["model"] = str(model_dir)
    parts = floor_parts(scene_path(cfg["pipeline"], work), model_dir, work)
    widths = []
    for width in cfg["widths"]:
        print(f"width {width}: model before, pipeline {cfg['pipeline']}^2, model after ...",
              flush=True)
        path = model_dir if width == cfg["widths"][0] else train_width(cfg, width, work)
        widths.append(bench_width(cfg, width, path, work, parts))
        results["widths"] = widths
        save_json(results, args.out)
    results["ceiling"], results["pipeline"] = widths[0]["ceiling"], widths[0]["pipeline"]
    scenes = {cfg["pipeline"]: results["pipeline"]}
    for size in cfg["scale"]:
        if size not in scenes:
            print(f"scene {size}^2 through jobs.infer ...", flush=True)
            scenes[size] = bench_scene(size, model_dir, work)
            scenes[size]["ratio_to_ceiling"] = (scenes[size]["tiles_per_s"]
                                                / results["ceiling"]["tiles_per_s"])
    results["scale"] = [scenes[s] for s in cfg["scale"]]
    save_json(results, args.out)
    if cfg["granule"]:
        print(f"a {cfg['granule']}^2 SAFE granule through jobs.infer ...", flush=True)
        results["granule"] = bench_granule(cfg["granule"], model_dir, work, results["ceiling"])
        save_json(results, args.out)
    print(f"scene {cfg['pipeline']}^2 twice on a long-lived cluster ...", flush=True)
    warm = bench_warm_cluster(cfg["pipeline"], model_dir, work)
    warm["ratio_to_ceiling"] = warm["tiles_per_s"] / results["ceiling"]["tiles_per_s"]
    results["warm_cluster"] = warm
    print(f"an event of two {cfg['event']}^2 scenes against one ...", flush=True)
    results["event"] = bench_event(cfg["event"], model_dir, work)
    if args.device_report:
        results["device"] = device_report()
    save_json(results, args.out)
    write_markdown(results, args.out / "BENCHMARKS.md")
    print(f"wrote {args.out / 'BENCHMARKS.md'} and {args.out / 'bench' / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
