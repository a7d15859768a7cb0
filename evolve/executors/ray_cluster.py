"""Ray for the Ray executor: import it, start a local instance or join a cluster, check
the cluster's resources, and leave again.

    conn = connect(None, gpu_ids=None, num_cpus=2)       # a local instance (loopback only)
    conn = connect("10.0.0.5:6379")                      # an existing cluster (`ray start --head`)
    disconnect(conn)                                     # ray.shutdown() only if we called ray.init

A local instance binds to 127.0.0.1 only (nothing else can join it: for several machines
start a cluster with `ray start` and pass its address), keeps its session files in a short
temporary directory (Ray's socket paths must stay under ~107 characters) that is removed
on disconnect. It does not turn on Ray's `kill_child_processes_on_worker_exit_with_raylet_
subreaper` (measured: it stalls each evaluation's sandbox start by ~60 s); the executor
kills an actor's evaluator processes itself (ray_actor.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from evolve.executors.base import ExecutorError

RAY_HINT = "pip install '.[ray]'"
NAMESPACE = "evolve"
# What never travels to the cluster when the orchestrator's code is shipped.
SHIP_EXCLUDES = ["__pycache__/", "*.pyc", "*.egg-info/", ".pytest_cache/"]
LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024  # jobs and results are a few kB each


def import_ray() -> Any:
    """The `ray` module, or ExecutorError naming the install command."""
    try:
        import ray
    except ImportError as e:
        raise ExecutorError(f"--executor ray needs Ray ({e}): {RAY_HINT}") from None
    return ray


@dataclass
class Connection:
    ray: Any
    owned: bool                  # we called ray.init: ray.shutdown() on disconnect
    address: str | None          # the cluster's address (None: local instance)
    temp_dir: Path | None = None  # the local instance's session files
    environ: dict[str, str] | None = None  # RAY_* variables before a local ray.init
    shipped: bool = False         # the orchestrator's code travels as the job's working_dir


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "host:port" / "ray://host:port" / "[v6]:port"; None for "auto" etc."""
    a = address.strip()
    if "://" in a:
        a = a.split("://", 1)[1]
    a = a.split("/", 1)[0]
    host, sep, port = a.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A TCP connection to the cluster's address, or ExecutorError (ray.init itself would
    retry an unreachable address for many minutes)."""
    hp = _host_port(address)
    if hp is None:
        return  # "auto" and the like: Ray resolves it and fails fast without a cluster
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as e:
        raise ExecutorError(f"cannot reach the Ray cluster at {address} ({e}); start one with "
                            "`ray start --head` and pass its address (host:port), "
                            "or leave --ray-address out for a local Ray") from None


@contextlib.contextmanager
def _environ(changes: dict[str, str | None]) -> Iterator[None]:
    """Temporarily set (or, with None, remove) environment variables; the processes that
    ray.init starts inherit them."""
    def apply(values: dict[str, str | None]) -> None:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    old = {k: os.environ.get(k) for k in changes}
    try:
        apply(changes)
        yield
    finally:
        apply(old)


@contextlib.contextmanager
def _loopback(ray: Any) -> Iterator[None]:
    """Make Ray pick 127.0.0.1 as this node's address (it otherwise uses the address of
    the default route, and listens there)."""
    consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
    old = getattr(consts, "ENABLE_RAY_CLUSTER", None)
    with _environ({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}):
        try:
            if old is not None:
                consts.ENABLE_RAY_CLUSTER = False
            yield
        finally:
            if old is not None:
                consts.ENABLE_RAY_CLUSTER = old


def connect(address: str | None, *, gpu_ids: list[int] | None = None, gpu_actors: bool = False,
            num_cpus: int | None = None, loopback: bool | None = None) -> Connection:
    """Join the cluster at `address`, or start a local instance (address None).

    Local instance: `gpu_ids` restricts its GPUs to those indices (CUDA_VISIBLE_DEVICES
    while it starts); without GPU actors it gets no GPUs. `loopback` (default: on for a
    local instance, off for a cluster) makes this process use 127.0.0.1 as its node
    address: needed to join a one-machine cluster started with
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head` (which listens on 127.0.0.1
    only), wrong for a real cluster. When Ray is already initialised in this process (by
    the caller), that connection is used and left alone. Joining a cluster, the job's
    runtime_env ships this process's code (`ship_runtime_env`); every actor and task of
    this process gets it."""
    ray = import_ray()
    if ray.is_initialized():
        return Connection(ray, owned=False, address=address)
    if address:
        check_reachable(address)
        staging = Path(tempfile.mkdtemp(prefix="evolve-ship-"))
        try:
            env = ship_runtime_env(staging)
            with _loopback(ray) if loopback else contextlib.nullcontext():
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                         logging_level=logging.WARNING, runtime_env=env)
        except Exception as e:  # ConnectionError, auth errors, version mismatch, ...
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise ExecutorError(f"cannot connect to the Ray cluster at {address}: "
                                f"{why(e)}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # uploaded by ray.init
        return Connection(ray, owned=True, address=address, shipped=True)
    from evolve.paths import REPO_ROOT

    before = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}
    temp = Path(tempfile.mkdtemp(prefix="evolve-ray-", dir="/tmp" if os.path.isdir("/tmp")
                                 else None))
    env: dict[str, str | None] = {
        # the workers import evolve from this checkout, as the local executor's do
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH"))
                                      if p),
    }
    if gpu_actors and gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
    kw: dict[str, Any] = dict(
        address="local", namespace=NAMESPACE, num_cpus=num_cpus, include_dashboard=False,
        log_to_driver=False, logging_level=logging.ERROR, _temp_dir=str(temp),
        object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    if not gpu_actors:
        kw["num_gpus"] = 0
    try:
        with _environ(env), (_loopback(ray) if loopback is not False
                             else contextlib.nullcontext()):
            ray.init(**kw)
    except Exception as e:
        with contextlib.suppress(Exception):
            ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        raise ExecutorError(f"cannot start a local Ray instance: {why(e)}") from None
    return Connection(ray, owned=True, address=None, temp_dir=temp, environ=before)


def disconnect(conn: Connection) -> None:
    """Leave Ray (ray.shutdown() if we called ray.init). After a local instance, the RAY_*
    environment variables that ray.init set in this process (e.g. RAY_AUTH_MODE=token,
    Ray's default for a new local instance) are undone, so that processes started later
    do not inherit them. (Ray itself keeps its auth mode for the life of the process: to
    join another cluster afterwards, use a new process.)"""
    if conn.owned:
        with contextlib.suppress(Exception):
            conn.ray.shutdown()
    if conn.environ is not None:
        for k in [k for k in os.environ if k.startswith("RAY_") and k not in conn.environ]:
            del os.environ[k]
        os.environ.update(conn.environ)
    if conn.temp_dir is not None:
        shutil.rmtree(conn.temp_dir, ignore_errors=True)


def cluster_gpus(conn: Connection) -> int:
    """GPUs of the whole cluster (all nodes), as Ray counts them."""
    return int(conn.ray.cluster_resources().get("GPU", 0))


def check_resources(conn: Connection, n_workers: int, gpu_actors: bool, cpus_per_worker: float) -> None:
    """ExecutorError unless the cluster has a GPU (and the CPUs) for every worker."""
    res = conn.ray.cluster_resources()
    where = f"the Ray cluster at {conn.address}" if conn.address else "the local Ray instance"
    if gpu_actors and res.get("GPU", 0) < n_workers:
        raise ExecutorError(f"{where} has {int(res.get('GPU', 0))} GPU(s); {n_workers} GPU "
                            "worker(s) were asked for")
    if res.get("CPU", 0) < n_workers * cpus_per_worker:
        raise ExecutorError(f"{where} has {res.get('CPU', 0):g} CPU(s); {n_workers} worker(s) "
                            f"x {cpus_per_worker:g} CPU were asked for")


def ship_runtime_env(staging: Path) -> dict[str, Any]:
    """The job runtime_env that ships this process's `evolve` and `evaluator` packages to
    the cluster, so the nodes run exactly the orchestrator's code: both are copied into
    `staging`, which becomes the job's working_dir (Ray uploads it once at ray.init,
    content-addressed; the actors start in it and import from it first). A working_dir
    rather than py_modules: with py_modules Ray also puts the driver's current directory
    on the workers' sys.path, where a node's own checkout at the same path would shadow
    the shipped code. The nodes still need the Python dependencies (torch, triton, ...)
    and the same Ray version."""
    import evaluator
    import evolve

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
    for mod in (evolve, evaluator):
        src = Path(mod.__file__).resolve().parent
        shutil.copytree(src, staging / src.name, ignore=ignore)
    return {"working_dir": str(staging), "excludes": list(SHIP_EXCLUDES)}


def ray_gpus(gpus: Any, n_workers: int | None) -> tuple[int, list[int] | None, str]:
    """The executor's `gpus` argument (see RayExecutor): (worker count, local GPU
    indices or None, mode: gpu / cpu / all / auto)."""
    if isinstance(gpus, str):
        if gpus not in ("all", "auto"):
            raise ExecutorError(f"gpus: {gpus!r} is not a GPU count, a list of indices, "
                                "'all' or 'auto'")
        return 0, None, gpus
    if gpus is None or gpus == 0 or gpus == [None]:
        n = 1 if n_workers is None else int(n_workers)
        if n < 1:
            raise ExecutorError("the Ray executor needs at least one worker")
        return n, None, "cpu"
    if isinstance(gpus, int):
        if gpus < 0:
            raise ExecutorError(f"gpus: {gpus} is not a GPU count")
        return gpus, None, "gpu"
    ids = [int(g) for g in gpus]
    if len(set(ids)) != len(ids) or any(g < 0 for g in ids):
        raise ExecutorError(f"gpus: {ids} has a repeated or negative index")
    return len(ids), ids, "gpu"


def why(e: BaseException) -> str:
    """One line about a Ray error: its first line and its last (where the cause is)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip() or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("File ", "^", "Traceback"))] or lines
    head, tail = keep[0], keep[-1]
    return f"{type(e).__name__}: " + (head if head == tail else f"{head} | ... | {tail}")[:600]
