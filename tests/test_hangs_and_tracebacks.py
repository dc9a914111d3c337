"""Issue 20, "Hangs and tracebacks": inputs that hung a job or ended it in a traceback give one
line naming the file (or option) and the problem, exit status 2.

Every server here listens on 127.0.0.1 only and is stopped by its test."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from common.errors import ClusterConfigError, InputError, LandslideError, OutputError
from jobs import tile as tile_job
from mapping.cluster import load_cluster_config, open_client
from mapping.lock import exclusive, store_lock
from tiler.blocks import read_block
from tiler.run import tile_block
from tiler.sources import resolve_input


def _scene(path: Path, width: int = 300, height: int = 200, **profile) -> Path:
    data = np.random.default_rng(1).random((14, height, width), dtype="float32") * 0.3 + 0.01
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=14,
                       dtype="float32", crs="EPSG:32633",
                       transform=from_origin(400_000, 5_000_000, 10, 10), **profile) as ds:
        ds.write(data)
    return path


# -- 1. cluster.yaml `address:` at something that is not a Dask scheduler ---------------------

class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log on stderr
        pass


@contextlib.contextmanager
def _http_server() -> Iterator[int]:
    # A thread per request, not waited for: a client that never ends its request line must
    # not hold the server's shutdown.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _socket_server(answer: bytes | None) -> Iterator[int]:
    """Accepts every connection; sends ``answer`` (None: nothing) and keeps it open."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conns.append(conn)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in conns:
            conn.close()
        listener.close()


def _connect_and_close(path: Path) -> None:
    with open_client(load_cluster_config(path)):
        pass


def _raised_within(seconds: float, call) -> BaseException | None:
    """What ``call()`` raised (None: nothing), run in a daemon thread so that a hang fails the
    test after ``seconds`` instead of hanging the session."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        pytest.fail(f"still waiting after {seconds} s")
    return outcome[0]


SERVERS = {
    "http": _http_server,
    "silent": lambda: _socket_server(None),
    # what gave "Unable to allocate 3.07 EiB": 8 bytes read as a frame count
    "other-bytes": lambda: _socket_server(b"SSH-2.0-OpenSSH_9.6\r\n" + b"x" * 64),
}


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_address_of_something_not_a_scheduler_is_one_line_within_connect_timeout(
        tmp_path, kind):
    with SERVERS[kind]() as port:
        address = f"tcp://127.0.0.1:{port}"
        path = tmp_path / "cluster.yaml"
        path.write_text(f"address: {address}\nconnect_timeout: 1\n")
        start = time.monotonic()
        error = _raised_within(10, lambda: _connect_and_close(path))
        elapsed = time.monotonic() - start
    assert isinstance(error, ClusterConfigError), error
    msg = str(error)
    assert msg.startswith(f"{path}: {address} ") and "\n" not in msg, msg
    assert "Dask scheduler" in msg and "EiB" not in msg
    assert elapsed < 3, elapsed  # connect_timeout 1 s, plus importing distributed


def test_job_exits_2_on_an_address_that_never_answers(tmp_path, capsys):
    scene = _scene(tmp_path / "scene.tif")
    with _socket_server(None) as port:
        path = tmp_path / "cluster.yaml"
        path.write_text(f"address: tcp://127.0.0.1:{port}\nconnect_timeout: 1\n")
        start = time.monotonic()
        rcs: list[int] = []
        assert _raised_within(20, lambda: rcs.append(tile_job.main(
            [str(scene), "--out", str(tmp_path / "o.zarr"), "--cluster", str(path),
             "--no-progress"]))) is None
        elapsed = time.monotonic() - start
        rc = rcs[0]
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and elapsed < 10
    assert err == [f"python -m jobs.tile: error: {path}: tcp://127.0.0.1:{port} accepts "
                   "connections but does not answer as a Dask scheduler within 1 s (another "
                   "program on that port?)"]


# -- 2. `security:` naming TLS files that do not exist ----------------------------------------

def _security_yaml(tmp_path: Path, ca: Path, cert: Path, key: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(f"local:\n  n_workers: 1\nsecurity:\n  tls_ca_file: {ca}\n"
                    f"  tls_client_cert: {cert}\n  tls_client_key: {key}\n")
    return path


@pytest.mark.parametrize("missing", ["tls_ca_file", "tls_client_cert", "tls_client_key"])
def test_missing_tls_file_is_one_line_naming_it(tmp_path, missing):
    files = {k: tmp_path / f"{k}.pem" for k in ("tls_ca_file", "tls_client_cert",
                                                  "tls_client_key")}
    for key, file in files.items():
        if key != missing:
            file.write_text("-----BEGIN CERTIFICATE-----\n")
    path = _security_yaml(tmp_path, *files.values())
    with pytest.raises(ClusterConfigError) as info:
        load_cluster_config(path)
    assert str(info.value) == (f"{path}: 'security.{missing}' names {files[missing]}, which "
                               "does not exist")


def test_tls_file_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "ca").mkdir()
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    path = _security_yaml(tmp_path, tmp_path / "ca", tmp_path / "cert.pem", tmp_path / "key.pem")
    with pytest.raises(ClusterConfigError, match="'security.tls_ca_file' names .*/ca, which is "
                                                 "a directory, not a file"):
        load_cluster_config(path)


def test_existing_tls_files_are_accepted(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    cfg = load_cluster_config(_security_yaml(tmp_path, tmp_path / "ca.pem",
                                             tmp_path / "cert.pem", tmp_path / "key.pem"))
    assert cfg.security.tls_client_key == str(tmp_path / "key.pem")


def test_job_exits_2_on_a_missing_tls_file_before_any_cluster_or_store(tmp_path, capsys):
    scene = _scene(tmp_path / "scene.tif")
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    path = _security_yaml(tmp_path, tmp_path / "ca.pem", tmp_path / "cert.pem",
                          tmp_path / "key.pem")
    out = tmp_path / "o.zarr"
    rc = tile_job.main([str(scene), "--out", str(out), "--cluster", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert err == [f"python -m jobs.tile: error: {path}: 'security.tls_ca_file' names "
                   f"{tmp_path / 'ca.pem'}, which does not exist"]


# -- 3. fcntl locks on NFS / Lustre: ENOLCK, EOPNOTSUPP, ENOSYS -------------------------------

def _no_locks(code: int):
    def flock(fd, operation):
        raise OSError(code, os.strerror(code))

    return flock


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_filesystem_without_locks_is_one_line_naming_the_lock_file(tmp_path, monkeypatch,
                                                                     code):
    monkeypatch.setattr(fcntl, "flock", _no_locks(code))
    lock = tmp_path / ".out.lock"
    with pytest.raises(OutputError) as info:
        with exclusive(lock, tmp_path / "out"):
            pytest.fail("ran without the lock")
    assert str(info.value) == (
        f"{lock}: the filesystem does not support file locks ({errno.errorcode[code]}: "
        f"{os.strerror(code)}), and the lock keeps two jobs from writing one output at once: "
        "choose an --out on another filesystem (a local disk, or one mounted with locks)")


def test_job_exits_2_when_the_out_filesystem_has_no_locks(tmp_path, monkeypatch, capsys):
    scene = _scene(tmp_path / "scene.tif")
    monkeypatch.setattr(fcntl, "flock", _no_locks(errno.ENOLCK))
    out = tmp_path / "o.zarr"
    rc = tile_job.main([str(scene), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and err[0].startswith(
        f"python -m jobs.tile: error: {store_lock(out)}: the filesystem does not support file "
        "locks (ENOLCK: ")
    assert "--out" in err[0]


def test_a_lock_held_by_another_job_is_still_busy(tmp_path):
    from common.errors import BusyError

    lock = tmp_path / ".out.lock"
    with exclusive(lock, tmp_path / "out"):
        with pytest.raises(BusyError, match="another job is writing here"):
            with exclusive(lock, tmp_path / "out"):
                pass


# -- 4. a read error inside a worker: a tile of the stack corrupt away from the sampled windows -

def _corrupt_stack(path: Path) -> Path:
    """A 600 x 600 px 14-band stack in 32 px deflate tiles whose tile (1, 1), rows and cols
    32..63, is zeroed: no window that resolve_input samples touches it (16 px windows at
    0, 73, 146, ... and the 256 px centre), so only the tiling of block (0, 0) meets it."""
    _scene(path, 600, 600, tiled=True, blockxsize=32, blockysize=32, compress="deflate")
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(size))
    return path


def _through_dask(exc: BaseException) -> BaseException:
    """``exc`` as distributed sends a task's error from a worker to the client."""
    from distributed.core import clean_exception, error_message

    message = error_message(exc)  # on the worker: the pickled error (Serialize-wrapped)
    tb = message["traceback"]
    return clean_exception(message["exception"].data, tb.data if tb is not None else None)[1]


def test_a_corrupt_tile_is_an_input_error_naming_the_file_and_the_window(tmp_path):
    scene = _corrupt_stack(tmp_path / "scene.tif")
    spec = resolve_input(scene)  # the sampled windows miss the corrupt tile
    with pytest.raises(InputError) as info:
        read_block(spec, 0, 0)
    msg = str(info.value)
    assert msg.startswith(f"{scene}: cannot read band 1 in the window of 640 x 640 px at "
                          "row 0, col 0 of the scene grid (a corrupt or truncated file? ")
    assert "IReadBlock failed at X offset 1, Y offset 1" in msg and "\n" not in msg
    assert "See previous exception" not in msg
    # what the worker sends is what the job gets: an InputError with that message
    sent = _through_dask(info.value)
    assert type(sent) is InputError and str(sent) == msg


def test_a_task_error_reaches_the_client_as_its_class(tmp_path):
    scene = _corrupt_stack(tmp_path / "scene.tif")
    spec = resolve_input(scene)
    with pytest.raises(InputError) as info:
        tile_block(0, 0, spec, str(tmp_path / "never-written.zarr"))
    sent = _through_dask(info.value)
    assert type(sent) is InputError and str(sent) == str(info.value)


def test_reaches_client_detaches_an_unpicklable_chain():
    from rasterio._err import CPLE_AppDefinedError

    from common.errors import reaches_client

    @reaches_client
    def task() -> None:
        try:
            raise CPLE_AppDefinedError(1, 1, "IReadBlock failed")
        except CPLE_AppDefinedError:
            raise InputError("a.tif: cannot read") from None

    with pytest.raises(InputError) as info:
        task()
    sent = _through_dask(info.value)
    assert type(sent) is InputError and str(sent) == "a.tif: cannot read"

    class Odd(LandslideError):
        def __init__(self, path: str, problem: str) -> None:
            super().__init__(f"{path}: {problem}")

    @reaches_client
    def odd() -> None:
        raise Odd("b.tif", "bad")

    with pytest.raises(LandslideError) as info:
        odd()
    sent = _through_dask(info.value)
    assert isinstance(sent, LandslideError) and str(sent) == "b.tif: bad"


def test_job_exits_2_with_one_line_on_a_corrupt_tile(tmp_path, capsys, one_worker_cluster):
    scene = _corrupt_stack(tmp_path / "scene.tif")
    out = tmp_path / "o.zarr"
    rc = tile_job.main([str(scene), "--out", str(out), "--cluster", str(one_worker_cluster),
                        "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    errors = [line for line in err if line.startswith("python -m jobs.tile: error: ")]
    assert errors == [err[-1]] and len(errors) == 1
    assert errors[0].startswith(f"python -m jobs.tile: error: {scene}: cannot read band 1 in "
                                "the window of 640 x 640 px at row 0, col 0")
