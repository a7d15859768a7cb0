"""What flows between the orchestrator and the evaluation executors.

The orchestrator (the single writer of the lineage DB and the git repo) turns work into
`EvalJob`s and hands them to an `Executor`. Its slots (one `WorkerSlot` per GPU, with the
GPU's `Lane`: lane.py) take the jobs from one `JobQueue` and run each with
`evolve.jobs.run_job` (local: in a slot thread; Ray: on the slot's actor), up to two at
once with overlap, resolving the job's future with a `JobResult`.
Workers never touch the run's DB or repo: everything they need travels inside the job (the
sources as text), everything they produce travels back inside the result (plain,
JSON-able data).
"""

from __future__ import annotations

import abc
import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from evolve.records import utc_now

JOB_KINDS = ("candidate", "probe", "rematch")
WORKER_STATES = ("starting", "idle", "compile", "timing", "busy", "dead", "stopped")
_LIVE = ("idle", "compile", "timing", "busy")


class ExecutorError(Exception):
    """An executor cannot start (no such GPU, Ray missing or unreachable, ...)."""


@dataclass
class EvalJob:
    job_id: str                    # unique in the run: "cand-12", "probe-ab12cd", "rematch-12-vs-3"
    kind: str                      # one of JOB_KINDS
    target: str
    suite: str
    source: str                    # candidate / probe / challenger source text
    champion_source: str | None = None   # rematch only
    rounds: int = 5                # rematch only
    timeout_s: float = 600.0
    baselines: list[str] = field(default_factory=lambda: ["cudnn"])
    prescreen: dict[str, Any] | None = None  # candidate only; see evolve.jobs
    profile: dict[str, Any] | None = None  # probe only: evaluator.ProfileRequest.to_dict()
    attempt: int = 0               # re-queues so far (a job is re-queued at most once)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalJob":
        return cls(**d)


@dataclass
class JobResult:
    job_id: str
    kind: str
    worker: str                    # e.g. "local-gpu0", "ray-actor-1"
    gpu: int | None
    data: dict[str, Any]           # EvalResult.to_dict() / CompareResult.to_dict()
    log: str = ""                  # the evaluation log text (worker + checker)
    lost: str | None = None        # set when the job failed because its worker died twice
    error: str | None = None       # run_job could not evaluate (evaluator usage error / bug)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, job: EvalJob, worker: str, gpu: int | None, *, lost: str | None = None,
               error: str | None = None) -> "JobResult":
        """A job that produced no evaluation: its worker was lost, or the runner raised."""
        return cls(job_id=job.job_id, kind=job.kind, worker=worker, gpu=gpu, data={},
                   lost=lost, error=error, log=error or "")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobResult":
        return cls(**d)


@dataclass
class WorkerStatus:
    name: str
    gpu: int | None
    state: str                     # one of WORKER_STATES
    job_id: str | None = None
    jobs_done: int = 0
    restarts: int = 0
    busy_s: float = 0.0            # a job in flight
    compile_s: float = 0.0         # a job in its CPU part (compile phase, lane.py)
    timing_s: float = 0.0          # the GPU gate held
    idle_s: float = 0.0            # no job in flight
    gpu_idle_s: float = 0.0        # live and the GPU gate free (jobs or not)
    jobs: int = 0                  # jobs in flight now
    updated: str = ""              # ISO time of the last change
    pid: int | None = None         # the process running the jobs (local: the orchestrator)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fail(fut: Future, exc: BaseException) -> None:
    """Resolve `fut` with `exc` unless it is already done (or cancelled)."""
    try:
        if fut.running() or fut.set_running_or_notify_cancel():
            fut.set_exception(exc)
    except Exception:  # resolved meanwhile
        pass


class JobQueue:
    """The jobs waiting for a worker, shared by an executor's slots: first in, first out;
    a re-queued job goes first. `close` cancels what waits; each `get` then returns None."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[EvalJob, Future]] = collections.deque()
        self._cv = threading.Condition()
        self.closed = False

    def submit(self, job: EvalJob) -> "Future[JobResult]":
        fut: Future[JobResult] = Future()
        self.requeue(job, fut, first=False)
        return fut

    def requeue(self, job: EvalJob, fut: Future, first: bool = True) -> None:
        with self._cv:
            if self.closed:
                raise ExecutorError("the executor was shut down")
            (self._items.appendleft if first else self._items.append)((job, fut))
            self._cv.notify()

    def get(self, timeout: float | None = None) -> tuple[EvalJob, Future] | None:
        """The next job whose future was not cancelled (now running); None once closed or
        after `timeout` seconds."""
        with self._cv:
            while True:
                while self._items:
                    job, fut = self._items.popleft()
                    if fut.running() or fut.set_running_or_notify_cancel():
                        return job, fut
                if self.closed or not self._cv.wait(timeout):
                    return None

    def close(self, error: str = "the executor was shut down") -> None:
        with self._cv:
            self.closed = True
            items = list(self._items)
            self._items.clear()
            self._cv.notify_all()
        for _, fut in items:
            if not fut.cancel():
                fail(fut, ExecutorError(error))


class WorkerSlot:
    """One worker position (one GPU: local threads or a Ray actor): its status and its
    utilisation counters, kept by both executors the same way from the phases of the jobs
    in flight on its GPU's lane (lane.py; `sync`): busy/idle (a job in flight or not),
    compile (one in its CPU part), timing (the GPU gate held), GPU-idle (the gate free).
    The state shown: timing > compile > busy > idle, or a lifecycle state `set` gave
    (starting/dead/stopped). A change calls `on_change`; `log` appends to `log_path`."""

    def __init__(self, name: str, gpu: int | None, on_change: Callable[[], None] | None,
                 log_path: Path | None):
        self.name = name
        self.status = WorkerStatus(name=name, gpu=gpu, state="starting", updated=utc_now())
        self.on_change, self.log_path = on_change, log_path
        self._since = time.monotonic()
        self._lock = threading.Lock()
        self._phases: dict[str, str] = {}  # job id -> lane phase
        self.max_jobs = 1  # jobs in flight at once (2 with overlap on a GPU)

    def _account(self) -> None:
        now = time.monotonic()
        dt, self._since = now - self._since, now
        s, phases = self.status, self._phases.values()
        if s.state not in _LIVE:
            return
        if phases:
            s.busy_s += dt
        else:
            s.idle_s += dt
        s.compile_s += dt if "compile" in phases else 0.0
        if "timing" in phases:
            s.timing_s += dt
        else:
            s.gpu_idle_s += dt

    def _show(self) -> bool:
        """(locked) The state and job shown, from the phases; whether they changed."""
        s, ph = self.status, self._phases
        if s.state not in _LIVE:
            return False
        state, job = "idle", None
        for phase, shown in (("timing", "timing"), ("compile", "compile"), ("wait", "busy"),
                             ("after", "busy")):
            job = next((j for j, p in ph.items() if p == phase), None)
            if job is not None:
                state = shown
                break
        changed = (state, job, len(ph)) != (s.state, s.job_id, s.jobs)
        s.state, s.job_id, s.jobs = state, job, len(ph)
        return changed

    def _changed(self) -> None:
        self.status.updated = utc_now()

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # a display callback never stops a worker
                pass

    def sync(self, phases: dict[str, str]) -> None:
        """The phases of the jobs in flight now ({job id: phase}, lane.py)."""
        with self._lock:
            self._account()
            self._phases = dict(phases)
            changed = self._show()
            if changed:
                self._changed()
        if changed:
            self._notify()

    def set(self, state: str) -> None:
        """A lifecycle state: starting, dead, stopped, or idle (up: the phases decide)."""
        with self._lock:
            self._account()
            s = self.status
            before = (s.state, s.job_id)
            s.state = state
            if state == "idle":
                self._show()
            else:
                s.job_id, s.jobs, self._phases = None, 0, {}
            changed = (s.state, s.job_id) != before
            if changed:
                self._changed()
        if changed:
            self._notify()

    def log(self, line: str) -> None:
        if self.log_path is None:
            return
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"{utc_now()} {line}\n")
        except OSError:
            pass

    def count(self, done: int = 0, restarts: int = 0, **where: int | None) -> None:
        """Add to jobs_done / restarts; `pid=` / `gpu=` set where the worker lives."""
        with self._lock:
            s = self.status
            s.jobs_done, s.restarts = s.jobs_done + done, s.restarts + restarts
            s.pid, s.gpu = where.get("pid", s.pid), where.get("gpu", s.gpu)

    def snapshot(self) -> WorkerStatus:
        with self._lock:
            self._account()
            return replace(self.status)


class Executor(abc.ABC):
    """Runs EvalJobs on its workers; thread-safe `submit`."""

    name: str = "executor"
    slots: list[WorkerSlot]  # one per worker (GPU)

    @abc.abstractmethod
    def submit(self, job: EvalJob) -> "Future[JobResult]":
        """Queue a job; the future resolves with its JobResult (never raises for a candidate's
        fault: a rejected candidate is a normal result). A Ray actor that dies or hangs is
        replaced and its job re-queued once; a second loss resolves the future with a
        JobResult whose `lost` says why (the orchestrator records class `internal`)."""

    def workers(self) -> list[WorkerStatus]:
        """A snapshot of every worker's state and utilisation counters."""
        return [s.snapshot() for s in self.slots]

    @property
    def capacity(self) -> int:
        """How many jobs can run at once (per worker 1, or 2 with overlap on a GPU)."""
        return sum(s.max_jobs for s in self.slots)

    @abc.abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers; pending futures are cancelled."""
