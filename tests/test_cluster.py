"""cluster.yaml validation, batch job scripts without a queue, and tiling through a real
`dask scheduler` + `dask worker` started as subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from jobs import tile as tile_job
from mapping.cluster import (
    ClusterConfigError,
    job_script,
    load_cluster_config,
    open_client,
)
from tiler.store import store_attrs

REPO = Path(__file__).resolve().parent.parent


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cluster.yaml"
    p.write_text(text)
    return p


def test_repo_cluster_yaml_is_valid_and_local():
    cfg = load_cluster_config(REPO / "cluster.yaml")
    assert cfg.kind == "local" and cfg.local.host == "127.0.0.1"
    assert cfg.connect_timeout == 10.0
    assert "# connect_timeout: 10\n" in (REPO / "cluster.yaml").read_text()  # documented
    n, threads = cfg.local.sized()
    assert n * threads >= (os.cpu_count() or 1)


@pytest.mark.parametrize("text,expected", [
    ("local:\n  n_workers: 2\nnodes: 3\n", "unknown key 'nodes'"),
    ("local:\n  n_wrkers: 2\n", "unknown key 'local.n_wrkers'"),
    ("local:\n  n_workers: two\n", "'local.n_workers' must be int"),
    ("local:\n  threads_per_worker: true\n", "'local.threads_per_worker'"),
    ("local: {}\naddress: tcp://127.0.0.1:8786\n", "two cluster kinds"),
    ("slurm:\n  cores: 4\n", "'slurm.memory' is required"),
    ("pbs:\n  cores: 4\n  memory: 8GB\n  job_extra_directives: -l x\n",
     "'pbs.job_extra_directives' must be list"),
    ("address: 8786\n", "'address' must be a string"),
    ("security:\n  tls_ca_file: a\n", "'security.tls_client_cert' is required"),
    ("dask: [1, 2]\n", "'dask' must be a mapping"),
    ("local: [\n", "not valid YAML"),
    ("- 1\n", "top level must be a mapping"),
    ("connect_timeout: 0\n", "'connect_timeout' must be a number of seconds > 0, got 0"),
    ("connect_timeout: -3\n", "'connect_timeout' must be a number of seconds > 0"),
    ("connect_timeout: ten\n", "'connect_timeout' must be a number of seconds > 0, got 'ten'"),
    ("connect_timeout: true\n", "'connect_timeout' must be a number of seconds > 0"),
    ("connect_timeout: .inf\n", "'connect_timeout' must be a number of seconds > 0"),
    ("connect_timeout:\n", "'connect_timeout' must be a number of seconds > 0, got None"),
])
def test_bad_cluster_yaml_is_one_line_naming_file_and_key(tmp_path, text, expected):
    path = _yaml(tmp_path, text)
    with pytest.raises(ClusterConfigError) as info:
        load_cluster_config(path)
    msg = str(info.value)
    assert expected in msg and str(path) in msg and "\n" not in msg


def test_missing_cluster_yaml(tmp_path):
    with pytest.raises(ClusterConfigError, match="not found"):
        load_cluster_config(tmp_path / "nope.yaml")


def test_connect_timeout_is_read(tmp_path):
    cfg = load_cluster_config(_yaml(tmp_path, "address: tcp://127.0.0.1:8786\n"
                                              "connect_timeout: 2.5\n"))
    assert cfg.kind == "address" and cfg.connect_timeout == 2.5
    assert load_cluster_config(_yaml(tmp_path, "address: tcp://127.0.0.1:8786\n")
                               ).connect_timeout == 10.0


def _free_port() -> int:
    """A port nobody listens on: bound by the OS for us, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_scheduler_at_address_is_one_line_within_the_default_10_s(tmp_path):
    port = _free_port()
    path = _yaml(tmp_path, f"address: tcp://127.0.0.1:{port}\n")
    start = time.monotonic()
    with pytest.raises(ClusterConfigError) as info:
        with open_client(load_cluster_config(path)):
            pass
    elapsed = time.monotonic() - start
    assert str(info.value) == (f"{path}: no Dask scheduler answers at tcp://127.0.0.1:{port} "
                               "within 10 s")
    assert elapsed < 20  # Dask's own default waited 30 s


def test_job_exits_2_when_no_scheduler_answers_within_connect_timeout(tmp_path, capsys):
    port = _free_port()
    path = _yaml(tmp_path, f"address: tcp://127.0.0.1:{port}\nconnect_timeout: 2\n")
    scene = _scene(tmp_path / "scene.tif")
    start = time.monotonic()
    rc = tile_job.main([str(scene), "--out", str(tmp_path / "o.zarr"), "--cluster", str(path),
                        "--no-progress"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and elapsed < 10
    assert err == [f"python -m jobs.tile: error: {path}: no Dask scheduler answers at "
                   f"tcp://127.0.0.1:{port} within 2 s"]


@pytest.mark.parametrize("kind,expected", [
    ("missing", "cluster config file not found"),
    ("directory", "is a directory, not a cluster.yaml file"),
    ("binary", "not valid YAML (not UTF-8 text)"),
])
def test_job_exits_2_on_unusable_cluster_path(tmp_path, capsys, kind, expected):
    path = tmp_path / "cluster.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00address")
    rc = tile_job.main(["whatever.tif", "--out", str(tmp_path / "o.zarr"), "--cluster",
                        str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"python -m jobs.tile: error: {path}: {expected}"]


def test_job_exits_2_on_bad_cluster_yaml(tmp_path, capsys):
    path = _yaml(tmp_path, "local:\n  bogus: 1\n")
    rc = tile_job.main(["whatever.tif", "--out", str(tmp_path / "o.zarr"), "--cluster",
                        str(path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "local.bogus" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("kind,directive", [("slurm", "#SBATCH"), ("pbs", "#PBS")])
def test_jobqueue_script_without_a_queue(tmp_path, kind, directive):
    path = _yaml(tmp_path, f"""
{kind}:
  cores: 8
  memory: 32GB
  processes: 2
  walltime: "01:30:00"
  queue: short
  account: geo123
  job_extra_directives: ["{'--exclusive' if kind == 'slurm' else '-l place=excl'}"]
  job_script_prologue: ["source /opt/venv/bin/activate"]
  jobs: 3
dask:
  distributed.scheduler.allowed-failures: 5
""")
    cfg = load_cluster_config(path)
    assert cfg.kind == kind and cfg.jobqueue.jobs == 3 and cfg.dask
    script = job_script(cfg)
    assert directive in script
    assert "short" in script and "geo123" in script and "01:30:00" in script
    assert "source /opt/venv/bin/activate" in script
    assert ("--exclusive" in script) if kind == "slurm" else ("place=excl" in script)
    assert "--nthreads 4" in script and "--nworkers 2" in script


def _scene(path: Path) -> Path:
    data = np.random.default_rng(1).random((14, 300, 1100), dtype="float32")
    with rasterio.open(path, "w", driver="GTiff", height=300, width=1100, count=14,
                       dtype="float32", crs="EPSG:32633",
                       transform=from_origin(400_000, 5_000_000, 10, 10)) as ds:
        ds.write(data)
    return path


def test_tiling_through_a_real_scheduler_and_worker(tmp_path):
    from tests.clusters import running_cluster

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with running_cluster(tmp_path, env, tmp_path) as cfg:
        with open_client(load_cluster_config(cfg)) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.scheduler.address.startswith("tcp://127.0.0.1:")
            # The worker is another process: it imports the project from PYTHONPATH.
            assert client.run(lambda: __import__("tiler.blocks") is not None)
        scene = _scene(tmp_path / "scene.tif")
        out = tmp_path / "s.zarr"
        rc = tile_job.main([str(scene), "--out", str(out), "--cluster", str(cfg),
                            "--no-progress"])
        assert rc == 0
        attrs = store_attrs(out)
        assert attrs["complete"] is True and attrs["width"] == 1100


def test_open_client_embedded_local_cluster(tmp_path):
    cfg = load_cluster_config(_yaml(tmp_path, "local:\n  n_workers: 1\n  threads_per_worker: 1\n"
                                              "dask:\n  distributed.comm.timeouts.connect: 30s\n"))
    with open_client(cfg) as client:
        info = client.scheduler_info()
        assert len(info["workers"]) == 1
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert client.submit(lambda: __import__("tiler.run").__name__).result() == "tiler"


class _Scheduler:
    """A client stand-in: only scheduler_info(), as tf_threads and model_resources read it."""

    def __init__(self, workers: dict) -> None:
        self.workers = workers

    def scheduler_info(self) -> dict:
        return {"workers": self.workers}


def test_model_threads_on_a_kept_cluster_follow_the_workers(tmp_path):
    from mapping.cluster import model_resources, tf_threads

    cfg = load_cluster_config(_yaml(tmp_path, "address: tcp://127.0.0.1:8786\n"))
    with_model = _Scheduler({"a": {"nthreads": 4, "resources": {"MODEL": 2}},
                             "b": {"nthreads": 8, "resources": {"MODEL": 2}}})
    assert model_resources(with_model) == {"MODEL": 1}
    assert tf_threads(cfg, with_model) == 4  # the smallest worker's threads: never oversubscribed
    mixed = _Scheduler({"a": {"nthreads": 4, "resources": {"MODEL": 2}},
                        "b": {"nthreads": 8, "resources": {}}})
    assert model_resources(mixed) is None and tf_threads(cfg, mixed) is None
    local = load_cluster_config(_yaml(tmp_path, "local:\n  n_workers: 1\n"))
    assert tf_threads(local, mixed) == os.cpu_count()  # one local worker: all the cores
