"""Bookkeeping of the Ray executor on the orchestrator's side: one `Slot` per actor
position (the live actor, its job in flight, its utilisation counters), the queued
`Item`s, the `gpus` argument, and helpers: stop an actor, build lost / error results."""

from __future__ import annotations

import re
import time
from concurrent.futures import Future
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

from evolve.executors.base import EvalJob, ExecutorError, JobResult, WorkerStatus

_BUSY = ("busy", "compile", "timing")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Item:
    job: EvalJob
    future: "Future[JobResult]"


class Slot:
    """One actor position: the live actor (replaced when lost) and its counters."""

    def __init__(self, name: str, gpu_actor: bool):
        self.name, self.gpu_actor = name, gpu_actor
        self.status = WorkerStatus(name=name, gpu=None, state="starting", updated=now_iso())
        self.actor: Any = None
        self.ready_ref: Any = None
        self.started_at = 0.0
        self.failures = 0          # consecutive failed starts
        self.given_up: str | None = None
        self.item: Item | None = None
        self.job_ref: Any = None
        self.deadline = 0.0
        self.limit = 0.0
        self.status_ref: Any = None
        self.polled = 0.0
        self.host = ""
        self.node_id: str | None = None
        self.cpus = 1
        self.known: dict[int, tuple[int, int]] = {}  # the actor's descendants seen while busy
        self._since = time.monotonic()

    def account(self, now: float) -> None:
        dt, self._since = now - self._since, now
        s = self.status
        if s.state == "idle":
            s.idle_s += dt
        elif s.state in _BUSY:
            s.busy_s += dt
            if s.state == "compile":
                s.compile_s += dt
            elif s.state == "timing":
                s.timing_s += dt

    def set(self, state: str, job_id: str | None = None, keep_job: bool = False) -> bool:
        self.account(time.monotonic())
        changed = state != self.status.state or (not keep_job and job_id != self.status.job_id)
        self.status.state = state
        if not keep_job:
            self.status.job_id = job_id
        if changed:
            self.status.updated = now_iso()
        return changed


def parse_gpus(gpus: Any, n_workers: int | None) -> tuple[int, list[int] | None, str]:
    """The executor's `gpus` argument (see RayExecutor): (worker count, local GPU
    indices or None, mode: gpu / cpu / all / auto)."""
    if isinstance(gpus, str):
        g = gpus.strip().lower()
        if g in ("all", "auto"):
            return 0, None, g
        if g in ("", "none", "cpu"):
            gpus = None
        else:
            try:
                gpus = [int(p) for p in g.split(",")]
            except ValueError:
                raise ExecutorError(f"gpus: {gpus!r} is not a GPU count, a list of "
                                    "indices, 'all' or 'auto'") from None
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


def set_exception(fut: Future, exc: BaseException) -> None:
    if fut.done():
        return
    try:
        if not fut.running():
            fut.set_running_or_notify_cancel()
        fut.set_exception(exc)
    except Exception:
        pass


def stop_actor(ray: Any, actor: Any, method: str, wait_s: float, reap_task: Any,
               known: list, node_id: str | None) -> None:
    """Best effort, in this order: call the actor's `method` in its control group
    ("kill_children": a lost or hung actor's evaluator processes; "close_spares": an idle
    actor's pre-started worker; "": nothing), waiting at most `wait_s` (a dead or truly hung
    actor does not answer); kill the actor; then, when `known` processes [(pid, start
    time)] were remembered, a `reap_task` on its node kills what a dead actor left behind."""
    from evolve.executors.ray_actor import CONTROL_GROUP

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


def lost_result(job: EvalJob, s: Slot | None, why: str) -> JobResult:
    return JobResult(job_id=job.job_id, kind=job.kind, worker=s.name if s else "ray",
                     gpu=s.status.gpu if s else None, data={}, lost=why)


_HAS_ERROR = "error" in {f.name for f in fields(JobResult)}


def error_result(job: EvalJob, s: Slot, why: str) -> JobResult:
    """The runner raised: an error result (the worker lives on), not a lost job."""
    res = JobResult(job_id=job.job_id, kind=job.kind, worker=s.name, gpu=s.status.gpu,
                    data={}, log=why)
    if _HAS_ERROR:
        res.error = f"the runner raised on {s.name}: {why}"
    else:
        res.lost = f"the runner raised on {s.name}: {why}"
    return res
