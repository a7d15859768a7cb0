"""The Ray executor's actor: one evaluation worker (one GPU, or one interpreter worker).

This module runs on the cluster's nodes; it imports Ray only through the executor that
wraps `EvalActor` with `ray.remote`. An actor runs one job at a time (`run`, the default
concurrency group: 1, or 2 with overlap, `max_concurrency`) with `evolve.jobs.run_job`
on the actor's GPU lane (lane.py: the gate, so two evaluations never share the GPU);
`status` and `kill_children` run in the "control" group so the orchestrator can ask
what a busy actor is doing (each job's phase, whether a next job may start), which
processes it has started (the orchestrator remembers them), and
clean up its evaluator processes before killing it. `reap` (a plain Ray task pinned to the
actor's node) kills the remembered processes of an actor that died on its own: the
evaluator's processes run in their own sessions and would otherwise outlive it.

GPU: Ray gives a GPU actor one GPU by setting CUDA_VISIBLE_DEVICES (e.g. "3") before the
actor starts. The evaluator sets CUDA_VISIBLE_DEVICES=<gpu> for its own processes (which
replaces the variable: the index counts from the node's physical GPUs, not from the
actor's view), so the actor passes Ray's physical index (3), never 0; when Ray's value is
not a plain index (a GPU UUID, MIG), it passes None and the evaluator's processes inherit
the actor's CUDA_VISIBLE_DEVICES unchanged. A CPU actor passes None (the interpreter).
"""

from __future__ import annotations

import importlib
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

from evolve.executors.lane import Lane
from evolve.executors.procs import alive, descendants, host_cpus, kill_procs
from evolve.jobs import BaselineCache, SparePool, run_job
from evolve.records import sha256_text

CONTROL_GROUP = "control"
CONCURRENCY_GROUPS = {CONTROL_GROUP: 1}


def load_runner(runner: str | None) -> Callable[..., Any]:
    """None -> evolve.jobs.run_job; "module:function" -> that function (run_job's
    signature; tests give their own)."""
    if runner is None:
        return run_job
    module, _, name = runner.partition(":")
    return getattr(importlib.import_module(module), name or "run_job")


def assigned_gpu(gpu_actor: bool) -> int | None:
    """The physical GPU index Ray gave this actor (see the module docstring)."""
    if not gpu_actor:
        return None
    parts = [p.strip() for p in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if p.strip()]
    if len(parts) == 1 and parts[0].isdigit():
        return int(parts[0])
    return None


def node_workdir(workdir: str | None, driver_host: str, name: str) -> Path:
    """The run's scratch directory on the orchestrator's own host; elsewhere a directory
    under the node's temp dir (the orchestrator's paths mean nothing there)."""
    if workdir and socket.gethostname() == driver_host:
        return Path(workdir)
    tag = sha256_text(f"{driver_host}:{workdir}")[:10]
    return Path(tempfile.gettempdir()) / "evolve-ray" / f"{driver_host}-{tag}" / name


class EvalActor:
    """One evaluation worker; constructed on its node by Ray."""

    def __init__(self, name: str, runner: str | None = None, workdir: str | None = None,
                 driver_host: str = "", baseline_ttl_s: float = 600.0, gpu_actor: bool = False,
                 prestart: bool = False):
        self.name = name
        self.gpu = assigned_gpu(gpu_actor)
        self.runner = load_runner(runner)
        self.workdir = node_workdir(workdir, driver_host, name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache = BaselineCache(baseline_ttl_s)
        self.lane = Lane()
        # one pre-started evaluator worker for the next job (evolve.jobs.SparePool; it turns
        # itself off where the sandbox has no pid namespace); its scratch: spares-<name>
        self.spares = SparePool(self.gpu, self.workdir / f"spares-{name}") if prestart else None
        if self.spares is not None:
            self.spares.refill()

    def ready(self) -> dict[str, Any]:
        import evolve

        try:
            import ray
            node_id = ray.get_runtime_context().get_node_id()
        except Exception:
            node_id = None
        return {"pid": os.getpid(), "host": socket.gethostname(), "node_id": node_id, "gpu": self.gpu,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "cpus": host_cpus(), "evolve": str(Path(evolve.__file__).resolve().parent)}

    def run(self, job: dict[str, Any], compile_threads: int | None = None) -> dict[str, Any]:
        """Run one job (an EvalJob dict); the JobResult as a dict."""
        from evolve.executors.base import EvalJob

        ej = EvalJob.from_dict(job)
        self.lane.begin(ej.job_id, reserved=False)
        try:
            res = self.runner(ej, self.gpu, self.workdir, baseline_cache=self.cache,
                              worker=self.name, compile_threads=compile_threads,
                              spares=self.spares, lane=self.lane)
        finally:
            self.lane.end(ej.job_id)
        return res.to_dict()

    def status(self, max_jobs: int = 1) -> dict[str, Any]:
        """(control group) The phase of each running job ({job id: phase}, lane.py),
        whether another job may start (of `max_jobs` at once) and this actor's live
        descendants [(pid, start time)]."""
        phases, may = self.lane.snapshot(max_jobs)
        return {"phases": phases, "may_start": may,
                "procs": descendants(os.getpid()) if phases else []}

    def kill_children(self) -> int:
        """(control group) SIGKILL this actor's descendants (the evaluator's sandboxed
        processes run in their own sessions, the pre-started spare too); how many."""
        procs = descendants(os.getpid())
        kill_procs(procs)
        self.close_spares()
        return len(procs)

    def close_spares(self) -> None:
        """(control group) Stop the pre-started worker and remove its scratch (before a
        planned kill; a spare whose actor died exits when its stdin closes)."""
        if self.spares is not None:
            self.spares.close()


def reap(procs: list[Any]) -> int:
    """(a Ray task on the dead actor's node) SIGKILL those of `procs` [(pid, start time)]
    that still live; a recycled pid (other start time) is left alone."""
    live = [tuple(p) for p in procs if alive(tuple(p))]
    kill_procs(live)
    return len(live)


def stop_actor(ray: Any, actor: Any, method: str, wait_s: float, reap_task: Any,
               known: list, node_id: str | None) -> None:
    """Best effort, in this order: call the actor's `method` in its control group
    ("kill_children": a lost or hung actor's evaluator processes; "close_spares": an idle
    actor's pre-started worker; "": nothing), waiting at most `wait_s` (a dead or truly hung
    actor does not answer); kill the actor; then, when `known` processes [(pid, start
    time)] were remembered, a `reap_task` on its node kills what a dead actor left behind."""
    if method:
        try:
            call = getattr(actor, method).options(concurrency_group=CONTROL_GROUP)
            ray.wait([call.remote()], timeout=wait_s)
        except Exception:
            pass
    try:
        ray.kill(actor, no_restart=True)
    except Exception:
        pass
    if known and node_id:
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts: dict[str, Any] = dict(num_cpus=0, max_retries=0, scheduling_strategy=
                                        NodeAffinitySchedulingStrategy(node_id, soft=False))
            reap_task.options(**opts).remote(known)
        except Exception:
            pass
