"""python -m bench.floor SCENE MODEL [--dem DEM]: what a scene job cannot avoid on this machine,
each part measured once in a fresh process, as JSON on stdout.

- ``process_s``: start Python and import the job (``import jobs.infer``);
- ``cluster_s``: start and stop the embedded LocalCluster;
- ``load_s``: import TensorFlow and load the model (a worker's first block);
- ``read_s``: read every band of the scene once (whole bands, GDAL's cheapest path; JP2 decoded
  with all cores);
- ``write_s``: write the probability and mask COGs of the scene's size from memory.

Their sum, plus the model at its best on the scene's tiles, is the floor the bench reports: the
cost of doing each necessary thing once, one after another, with nothing around it. A pipeline
can go under it only by overlapping those parts (on 2 cores, little).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.procs import REPO, env


def _timed(code: str) -> float:
    """Wall seconds of ``python -c code`` from start to exit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env(), cwd=REPO, check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def read_s(scene: str, dem: str | None) -> float:
    import rasterio

    from tiler.sources import BandSource, resolve_input

    spec = resolve_input(scene, dem)
    files = {(b.path, b.index) for b in (*spec.bands, spec.dem, spec.slope)
             if isinstance(b, BandSource)}
    t0 = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        for path, index in sorted(files):
            with rasterio.open(path) as src:
                src.read(index)
    return time.perf_counter() - t0


def write_s(height: int, width: int) -> float:
    import rasterio
    from rasterio.transform import from_origin

    from products.rasters import to_cog

    rng = np.random.default_rng(0)
    prob = rng.random((height, width), dtype=np.float32)
    mask = (prob > 0.99).astype(np.uint8)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, data, resampling in (("p", prob, "AVERAGE"), ("m", mask, "NEAREST")):
            raw, cog = Path(tmp) / f"{name}.raw.tif", Path(tmp) / f"{name}.tif"
            profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
                       "dtype": data.dtype.name, "crs": "EPSG:32645", "tiled": True,
                       "transform": from_origin(400000, 3100000, 10, 10)}
            with rasterio.open(raw, "w", **profile) as dst:
                dst.write(data, 1)
            to_cog(raw, cog, resampling)
    return time.perf_counter() - t0


def floor_parts(scene: str, model: str, dem: str | None = None) -> dict[str, float]:
    from tiler.sources import resolve_input

    grid = resolve_input(scene, dem).grid
    return {
        "process_s": _timed("import jobs.infer"),
        "cluster_s": _timed("from distributed import LocalCluster, Client\n"
                            "with LocalCluster(n_workers=1, dashboard_address=None) as c, "
                            "Client(c): pass"),
        "load_s": _timed("import matplotlib; matplotlib.use('Agg')\n"
                         f"from unet.bundle import load_bundle; load_bundle({model!r})"),
        "read_s": read_s(scene, dem),
        "write_s": write_s(grid.height, grid.width),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor")
    p.add_argument("scene")
    p.add_argument("model")
    p.add_argument("--dem")
    args = p.parse_args(argv)
    print(json.dumps(floor_parts(args.scene, args.model, args.dem)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
