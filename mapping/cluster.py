"""Where Dask work runs, from ``cluster.yaml`` (shared by the scene jobs: tiling, inference).

Exactly one cluster kind (none given = ``local``):
- ``local``: an embedded ``distributed.LocalCluster`` (worker processes) on 127.0.0.1;
- ``address``: an existing scheduler, ``tcp://HOST:PORT`` (or ``tls://``);
- ``slurm`` / ``pbs``: a dask-jobqueue ``SLURMCluster`` / ``PBSCluster`` scaled to ``jobs``.
Plus optional ``security`` (TLS files for ``distributed.security.Security``), ``dask``
(a mapping given to ``dask.config.set`` before the cluster starts) and ``connect_timeout``
(seconds to wait for the ``address`` scheduler to answer, default 10).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import ClusterConfigError

KINDS = ("local", "address", "slurm", "pbs")
MODEL_SLOT = "MODEL"
"""A Dask worker resource: each model task takes one unit. A worker's model tasks share one
TensorFlow thread pool sized to the worker's share of the cores, so the number of units bounds
the blocks (and activations) in memory at once, not the threads. The embedded cluster declares
MODEL_TASKS_PER_WORKER; start other workers with `--resources MODEL=2` to get the same."""
MODEL_TASKS_PER_WORKER = 2
"""Two model tasks per worker: one block is read and normalised while the other is in the
network. Measured on a 2048^2 scene, 2 cores: infer stage 14.5-14.9 s against 15.8-16.0 s with
one task per worker."""
CONNECT_TIMEOUT_S = 10.0
"""How long a job waits for the scheduler of ``address`` before it gives up with one line
(Dask's own default is 30 s, then a traceback)."""



@dataclass(frozen=True)
class LocalConfig:
    n_workers: int | None = None  # None: one worker process per 2 cores (at least 1)
    threads_per_worker: int | None = None  # None: cores / n_workers
    memory_limit: str = "auto"
    host: str = "127.0.0.1"
    dashboard_address: str | None = "127.0.0.1:0"

    def sized(self) -> tuple[int, int]:
        cores = os.cpu_count() or 1
        n = self.n_workers or max(1, cores // 2)
        return n, self.threads_per_worker or max(1, cores // n)


@dataclass(frozen=True)
class JobqueueConfig:
    cores: int
    memory: str
    processes: int = 1
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    jobs: int = 1


@dataclass(frozen=True)
class SecurityConfig:
    tls_ca_file: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    require_encryption: bool = True


@dataclass(frozen=True)
class ClusterConfig:
    kind: str = "local"
    local: LocalConfig = field(default_factory=LocalConfig)
    address: str | None = None
    jobqueue: JobqueueConfig | None = None
    security: SecurityConfig | None = None
    dask: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT_S


_LOCAL_TYPES = {"n_workers": (int, type(None)), "threads_per_worker": (int, type(None)),
                "memory_limit": (str, int), "host": (str,),
                "dashboard_address": (str, type(None))}
_JOBQUEUE_TYPES = {"cores": (int,), "memory": (str,), "processes": (int,),
                   "walltime": (str, type(None)), "queue": (str, type(None)),
                   "account": (str, type(None)), "job_extra_directives": (list,),
                   "job_script_prologue": (list,), "jobs": (int,)}
_SECURITY_TYPES = {"tls_ca_file": (str,), "tls_client_cert": (str,), "tls_client_key": (str,),
                   "require_encryption": (bool,)}


def _section(path: Path, name: str, raw: Any, types: dict[str, tuple[type, ...]],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"{path}: '{name}' must be a mapping")
    for key, value in raw.items():
        if key not in types:
            raise ClusterConfigError(f"{path}: unknown key '{name}.{key}' "
                                     f"(known: {', '.join(types)})")
        ok = types[key]
        if isinstance(value, bool) and bool not in ok:
            ok = ()
        if not isinstance(value, ok):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types[key])
            raise ClusterConfigError(f"{path}: '{name}.{key}' must be {want}, "
                                     f"got {type(value).__name__}")
        if key in ("job_extra_directives", "job_script_prologue") and not all(
                isinstance(v, str) for v in value):
            raise ClusterConfigError(f"{path}: '{name}.{key}' must be a list of strings")
    for key in required:
        if key not in raw:
            raise ClusterConfigError(f"{path}: '{name}.{key}' is required")
    return dict(raw)


def load_cluster_config(path: str | Path | None) -> ClusterConfig:
    """Read and validate ``cluster.yaml``; ``None`` gives the default (an embedded cluster)."""
    if path is None:
        return ClusterConfig()
    path = Path(path)
    raw = _read_yaml(path)
    known = (*KINDS, "security", "dask", "connect_timeout")
    for key in raw:
        if key not in known:
            raise ClusterConfigError(f"{path}: unknown key '{key}' (known: {', '.join(known)})")
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) > 1:
        raise ClusterConfigError(f"{path}: two cluster kinds at once ({', '.join(kinds)}): "
                                 "keep one")
    kind = kinds[0] if kinds else "local"
    local, address, jobqueue = LocalConfig(), None, None
    if kind == "local":
        local = LocalConfig(**_section(path, "local", raw.get("local"), _LOCAL_TYPES))
        for key in ("n_workers", "threads_per_worker"):
            value = getattr(local, key)
            if value is not None and value < 1:
                raise ClusterConfigError(f"{path}: 'local.{key}' must be >= 1")
    elif kind == "address":
        address = raw["address"]
        if not isinstance(address, str) or "://" not in address:
            raise ClusterConfigError(f"{path}: 'address' must be a string like "
                                     "tcp://HOST:PORT")
    else:
        sec = _section(path, kind, raw[kind], _JOBQUEUE_TYPES, required=("cores", "memory"))
        for key in ("job_extra_directives", "job_script_prologue"):
            if key in sec:
                sec[key] = tuple(sec[key])
        jobqueue = JobqueueConfig(**sec)
    security = None
    if "security" in raw:
        sec = _section(path, "security", raw["security"], _SECURITY_TYPES,
                       required=("tls_ca_file", "tls_client_cert", "tls_client_key"))
        security = SecurityConfig(**sec)
        for key in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
            _tls_file(path, key, getattr(security, key))
    dask_cfg = raw.get("dask") or {}
    if not isinstance(dask_cfg, dict):
        raise ClusterConfigError(f"{path}: 'dask' must be a mapping of dask config keys")
    return ClusterConfig(kind, local, address, jobqueue, security, dict(dask_cfg), str(path),
                         _connect_timeout(path, raw.get("connect_timeout", CONNECT_TIMEOUT_S)))


def _tls_file(path: Path, key: str, value: str) -> None:
    """A TLS file of ``security`` must be a readable file, said before any cluster starts
    (Dask found out only when its scheduler failed to start, in a traceback). Relative paths
    are Dask's: from the working directory."""
    where = f"{path}: 'security.{key}' names {value}"
    if not value:
        raise ClusterConfigError(f"{path}: 'security.{key}' is empty")
    if not os.path.exists(value):
        raise ClusterConfigError(f"{where}, which does not exist")
    if os.path.isdir(value):
        raise ClusterConfigError(f"{where}, which is a directory, not a file")
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise ClusterConfigError(f"{where}, which cannot be read "
                                 f"({exc.strerror or exc})") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a cluster.yaml; every way of not having one is one line."""
    if path.is_dir():
        raise ClusterConfigError(f"{path}: is a directory, not a cluster.yaml file")
    if not path.exists():
        raise ClusterConfigError(f"{path}: cluster config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ClusterConfigError(f"{path}: not valid YAML ({first})") from exc
    except UnicodeDecodeError as exc:
        raise ClusterConfigError(f"{path}: not valid YAML (not UTF-8 text)") from exc
    except OSError as exc:
        raise ClusterConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"{path}: top level must be a mapping")
    return raw


def _connect_timeout(path: Path, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value <= 0):
        raise ClusterConfigError(f"{path}: 'connect_timeout' must be a number of seconds > 0, "
                                 f"got {value!r}")
    return float(value)


def _connect(config: ClusterConfig, security: Any) -> Any:
    """A Client of the ``address`` scheduler, or one line naming the file and the address when
    none answers within ``connect_timeout`` (distributed reports every failure to connect,
    refused or unresolvable, as an OSError once its timeout has run out).

    The address is first asked who it is (``_probe``), with ``connect_timeout`` as the
    deadline for the whole exchange: distributed's Client waits without end on a program that
    accepts the connection and never answers (an HTTP server, a hung process), and reads any
    other bytes as a message length ("Unable to allocate 3.07 EiB")."""
    from distributed import Client

    _probe(config, security)
    try:
        return Client(config.address, security=security, timeout=config.connect_timeout)
    except OSError as exc:
        raise ClusterConfigError(_no_scheduler(config)) from exc


def _no_scheduler(config: ClusterConfig) -> str:
    return (f"{config.path or 'cluster.yaml'}: no Dask scheduler answers at {config.address} "
            f"within {config.connect_timeout:g} s")


def _probe(config: ClusterConfig, security: Any) -> None:
    """Connect to ``config.address``, shake hands and ask its identity, all within
    ``connect_timeout``; anything but a Dask scheduler's answer is one ClusterConfigError."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    args = security.get_connection_args("client") if security is not None else {}
    # A thread of its own: asyncio.run needs a thread without a running event loop.
    with ThreadPoolExecutor(1, thread_name_prefix="cluster-probe") as pool:
        problem = pool.submit(asyncio.run, _identity(config, args)).result()
    if problem is not None:
        raise ClusterConfigError(f"{config.path or 'cluster.yaml'}: {problem}")


async def _identity(config: ClusterConfig, args: dict[str, Any]) -> str | None:
    """None when a Dask scheduler answers at ``config.address``, else what is wrong there."""
    import asyncio

    from distributed.comm import CommClosedError, connect
    from distributed.comm.core import FatalCommClosedError

    address, timeout = config.address, config.connect_timeout
    other = "(another program on that port?)"

    async def ask() -> Any:
        comm = await connect(address, timeout=timeout, **args)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        reply = await asyncio.wait_for(ask(), timeout)
    except TimeoutError:
        if not _accepts(address):
            return _no_scheduler(config).split(": ", 1)[1]
        return (f"{address} accepts connections but does not answer as a Dask scheduler "
                f"within {timeout:g} s {other}")
    except FatalCommClosedError as exc:
        return f"cannot connect to {address} ({_first_line(exc)})"
    except CommClosedError:
        return (f"{address} closed the connection without answering as a Dask scheduler "
                f"{other}")
    except OSError:
        return _no_scheduler(config).split(": ", 1)[1]
    except Exception:  # noqa: BLE001 - any other bytes: a MemoryError, a decoding error, ...
        return f"{address} answers, but not as a Dask scheduler {other}"
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind == "Scheduler":
        return None
    if isinstance(kind, str) and kind:
        return f"{address} is a Dask {kind.lower()}, not a scheduler: give the scheduler's address"
    return f"{address} answers, but not as a Dask scheduler {other}"


def _accepts(address: str) -> bool:
    """Whether a TCP connection to ``address`` (tcp:// or tls://) is accepted at once."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    if scheme not in ("tcp", "tls"):
        return False
    try:
        host, port = parse_host_port(loc)
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _security(config: ClusterConfig):
    if config.security is None:
        return None
    from distributed.security import Security

    s = config.security
    return Security(tls_ca_file=s.tls_ca_file, tls_client_cert=s.tls_client_cert,
                    tls_client_key=s.tls_client_key, require_encryption=s.require_encryption)


def _worker_env() -> dict[str, str]:
    """Worker processes must import the project: put the repo root on their PYTHONPATH."""
    root = str(Path(__file__).resolve().parent.parent)
    current = os.environ.get("PYTHONPATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join([root, *[p for p in parts if p != root]])}


def make_jobqueue_cluster(config: ClusterConfig):
    """The (not yet scaled) SLURMCluster / PBSCluster for a ``slurm`` / ``pbs`` config."""
    if config.jobqueue is None:
        raise ClusterConfigError(f"{config.path}: no 'slurm' or 'pbs' section")
    from dask_jobqueue import PBSCluster, SLURMCluster

    cls = SLURMCluster if config.kind == "slurm" else PBSCluster
    j = config.jobqueue
    kwargs: dict[str, Any] = dict(
        cores=j.cores, memory=j.memory, processes=j.processes,
        job_extra_directives=list(j.job_extra_directives),
        job_script_prologue=list(j.job_script_prologue), security=_security(config))
    for key in ("walltime", "queue", "account"):
        if getattr(j, key) is not None:
            kwargs[key] = getattr(j, key)
    return cls(**kwargs)


def job_script(config: ClusterConfig) -> str:
    """The batch script the slurm/pbs cluster would submit (no queue needed to build it)."""
    import dask

    with dask.config.set(config.dask):
        cluster = make_jobqueue_cluster(config)
        try:
            return cluster.job_script()
        finally:
            cluster.close()


@contextlib.contextmanager
def open_client(config: ClusterConfig | None = None) -> Iterator[Any]:
    """Start the configured cluster (or connect to ``address``), yield a ``distributed.Client``,
    and shut down what was started on exit."""
    import dask
    from distributed import Client, LocalCluster

    config = config or ClusterConfig()
    with contextlib.ExitStack() as stack:
        stack.enter_context(dask.config.set(config.dask))
        security = _security(config)
        if config.kind == "address":
            client = _connect(config, security)
        elif config.kind == "local":
            n, threads = config.local.sized()
            protocol = "tls://" if security is not None else "tcp://"
            cluster = stack.enter_context(LocalCluster(
                n_workers=n, threads_per_worker=threads, processes=True,
                memory_limit=config.local.memory_limit, host=config.local.host,
                protocol=protocol, dashboard_address=config.local.dashboard_address,
                security=security, env=_worker_env(),
                resources={MODEL_SLOT: MODEL_TASKS_PER_WORKER}))
            client = Client(cluster, security=security)
        else:
            cluster = stack.enter_context(make_jobqueue_cluster(config))
            cluster.scale(jobs=config.jobqueue.jobs)
            client = Client(cluster, security=security)
        with client:
            yield client


def model_resources(client) -> dict[str, int] | None:
    """{MODEL: 1} (each model task takes one unit) when every worker declares that resource,
    else None (no restriction)."""
    workers = client.scheduler_info()["workers"].values()
    if workers and all(MODEL_SLOT in w.get("resources", {}) for w in workers):
        return {MODEL_SLOT: 1}
    return None


def tf_threads(config: ClusterConfig, client) -> int | None:
    """TensorFlow intra-op threads of a worker's one pool, which the worker's model tasks share
    (as many at once as its MODEL units). On the embedded cluster: the machine's cores shared
    among the worker processes. On other clusters whose workers all declare MODEL (`dask worker
    --resources MODEL=2`): each worker's thread count. None elsewhere: the worker decides."""
    if config.kind == "local":
        workers, _ = config.local.sized()
        return max(1, (os.cpu_count() or 1) // workers)
    if model_resources(client) is None:
        return None
    return min(w["nthreads"] for w in client.scheduler_info()["workers"].values())
