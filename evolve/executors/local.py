"""LocalExecutor: one long-lived worker process per GPU on this machine.

Each worker (`python -m evolve.executors.worker_main`) takes one job at a time, so two
timings never share a GPU; the evaluations themselves run in the evaluator's sandboxed
subprocesses, started by `evolve.jobs.run_job` inside the worker. A thread per worker in
the orchestrator process feeds it from one shared queue (a free GPU takes the next job)
and reads its JSON-lines answers (stage events, then the result).

A worker that dies (EOF) or hangs (no result after `timeout_s + grace_s`) is killed with
its process tree and replaced; its job is re-queued once (`attempt` 1), and a second
loss resolves the job with `JobResult(lost=...)`.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from evolve.executors.base import EvalJob, Executor, ExecutorError, JobResult, WorkerStatus
from evolve.executors.procs import Proc, descendants, stop_tree
from evolve.paths import REPO_ROOT
from evolve.records import utc_now

_TIMEOUT, _EOF = object(), object()
_BUSY_STATES = ("busy", "compile", "timing")


@dataclass
class _Item:
    job: EvalJob
    future: "Future[JobResult]"
    started: bool = False


class _Queue:
    """FIFO of jobs; a re-queued job goes to the front."""

    def __init__(self) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()

    def put(self, item: _Item, front: bool = False) -> None:
        with self._cond:
            (self._items.appendleft if front else self._items.append)(item)
            self._cond.notify()

    def get(self, timeout: float) -> _Item | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def drain(self) -> list[_Item]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()


class _Lines:
    """Line reader over a pipe with a deadline (select on the raw fd)."""

    def __init__(self, stream) -> None:  # noqa: ANN001
        self.fd = stream.fileno()
        self.buf = b""

    def read(self, deadline: float, tick=None):  # noqa: ANN001, ANN201
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return _TIMEOUT
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if tick is not None:
                tick()
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return _EOF
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Slot:
    """One worker: its process, its feeding thread, its utilisation counters."""

    def __init__(self, ex: "LocalExecutor", gpu: int | None, name: str):
        self.ex = ex
        self.status = WorkerStatus(name=name, gpu=gpu, state="starting", updated=utc_now())
        self.proc: subprocess.Popen | None = None
        self.lines: _Lines | None = None
        self.known: list[Proc] = []
        self._since = time.monotonic()
        self._scan = 0.0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"evolve-{name}", daemon=True)

    # --- state and counters --------------------------------------------------

    def set_state(self, state: str, job_id: str | None = None, keep_job: bool = False) -> None:
        with self._lock:
            self._account(time.monotonic())
            changed = state != self.status.state or (not keep_job and job_id != self.status.job_id)
            self.status.state = state
            if not keep_job:
                self.status.job_id = job_id
            if changed:
                self.status.updated = utc_now()
        if changed:
            self.ex._changed()

    def _account(self, now: float) -> None:
        dt, self._since = now - self._since, now
        s = self.status
        if s.state == "idle":
            s.idle_s += dt
        elif s.state in _BUSY_STATES:
            s.busy_s += dt
            if s.state == "compile":
                s.compile_s += dt
            elif s.state == "timing":
                s.timing_s += dt

    def snapshot(self) -> WorkerStatus:
        with self._lock:
            self._account(time.monotonic())
            return replace(self.status)

    # --- the process ---------------------------------------------------------

    def _start(self) -> str | None:
        """Start the worker process; None when it said ready, else why not."""
        ex = self.ex
        gpu = self.status.gpu
        cmd = [sys.executable, "-m", "evolve.executors.worker_main", "--name", self.status.name,
               "--gpu", "none" if gpu is None else str(gpu), "--workdir", str(ex.workdir),
               "--baseline-ttl", str(ex.baseline_ttl_s)]
        if ex.runner:
            cmd += ["--runner", ex.runner]
        if not ex.prestart:
            cmd.append("--no-prestart")
        if len(ex.slots) > 1:  # the workers share this host's CPUs for precompiling
            cmd += ["--compile-threads", str(max(1, min(8, _cpus() // len(ex.slots))))]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH"))
                                            if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.set_state("starting")
        ex.log_dir.mkdir(parents=True, exist_ok=True)
        with open(ex.log_dir / f"worker-{self.status.name}.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, env=env, start_new_session=True)
        self.lines = _Lines(self.proc.stdout)
        self.known = []
        line = self.lines.read(time.monotonic() + ex.start_timeout_s)
        if isinstance(line, str):
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {}
            if msg.get("event") == "ready":
                with self._lock:
                    self.status.pid = int(msg.get("pid") or self.proc.pid)
                self.set_state("idle")
                return None
        why = "exited" if line is _EOF else "did not answer" if line is _TIMEOUT else "garbled"
        self._kill()
        return f"worker process {why} at start (exit status {self.proc.returncode}); see " \
               f"{ex.log_dir / f'worker-{self.status.name}.log'}"

    def _kill(self) -> None:
        if self.proc is not None:
            stop_tree(self.proc, self.known, term_wait_s=self.ex.term_wait_s)
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        # a killed worker could not remove its pre-started evaluator worker's scratch
        shutil.rmtree(self.ex.workdir / f"spares-{self.status.name}", ignore_errors=True)
        with self._lock:
            self.status.pid = None
        self.proc, self.lines, self.known = None, None, []

    def _tick(self) -> None:
        now = time.monotonic()
        if self.proc is not None and now - self._scan >= 2.0:
            self._scan = now
            seen = {p[0] for p in self.known}
            self.known += [p for p in descendants(self.proc.pid) if p[0] not in seen]

    # --- the feeding thread -----------------------------------------------------

    def _run(self) -> None:
        ex = self.ex
        try:
            if self._start() is not None:
                self.set_state("dead")
            while not ex.closed:
                item = ex.queue.get(timeout=0.5)
                if item is None:
                    continue
                if not item.started:
                    if not item.future.set_running_or_notify_cancel():
                        continue
                    item.started = True
                if ex.closed:
                    item.future.set_exception(ExecutorError("the executor was shut down"))
                    break
                self._job(item)
        finally:
            self._close()

    def _job(self, item: _Item) -> None:
        ex, job = self.ex, item.job
        why = None
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._kill()
            why = self._start()
        if why is None:
            why = self._exchange(item)
            if why is None:
                return
        if ex.closed:
            item.future.set_exception(ExecutorError("the executor was shut down"))
            return
        self._kill()
        for left in ex.workdir.glob(f"{job.job_id}.a{job.attempt}.*"):  # the killed job's files
            shutil.rmtree(left, ignore_errors=True)
        with self._lock:
            self.status.restarts += 1
        self.set_state("dead")
        if job.attempt < 1:
            ex.queue.put(_Item(replace(job, attempt=job.attempt + 1), item.future, True),
                         front=True)
        else:
            item.future.set_result(JobResult(
                job_id=job.job_id, kind=job.kind, worker=self.status.name, gpu=self.status.gpu,
                data={}, lost=f"{why} (twice; the job was re-queued once)"))
        if not ex.closed and self._start() is not None:
            self.set_state("dead")

    def _exchange(self, item: _Item) -> str | None:
        """Hand one job to the live worker; None when resolved, else why the worker was lost."""
        job = item.job
        t0 = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps({"job": job.to_dict()}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            return f"worker process gone before the job ({e})"
        self.set_state("busy", job.job_id)
        limit = (job.timeout_s + self.ex.grace_s) * (2 if job.prescreen else 1)
        deadline = t0 + limit
        while True:
            line = self.lines.read(deadline, tick=self._tick)
            if line is _TIMEOUT:
                return f"worker hung: no result {limit:.0f} s after the job started"
            if line is _EOF:
                try:
                    rc = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    rc = None
                return f"worker process died during job {job.job_id} (exit status {rc})"
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("event") == "stage":
                self.set_state(msg.get("group") or "busy", keep_job=True)
            elif msg.get("event") == "result":
                res = JobResult.from_dict(msg["result"])
                res.worker, res.gpu = self.status.name, self.status.gpu
                with self._lock:
                    self.status.jobs_done += 1
                self.set_state("idle")
                item.future.set_result(res)
                return None

    def _close(self) -> None:
        if self.proc is not None:
            if self.ex.abandon:
                self._kill()
            else:
                try:
                    self.proc.stdin.close()
                    self.proc.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    pass
                self._kill()
        self.set_state("stopped")


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, gpus: list[int | None], workdir: Path, *, log_dir: Path | None = None,
                 grace_s: float = 4200.0, baseline_ttl_s: float = 600.0,
                 runner: str | None = None, start_timeout_s: float = 180.0,
                 term_wait_s: float = 5.0, on_change=None,  # noqa: ANN001
                 prestart: bool = True):
        if not gpus:
            raise ExecutorError("no evaluation workers: give at least one GPU (or None)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir) if log_dir else self.workdir
        self.grace_s, self.baseline_ttl_s, self.runner = grace_s, baseline_ttl_s, runner
        self.prestart = prestart  # workers keep a pre-started evaluator worker (evolve.jobs)
        self.start_timeout_s, self.term_wait_s = start_timeout_s, term_wait_s
        self.on_change = on_change
        self.queue = _Queue()
        self.closed = False
        self.abandon = False
        n_cpu = sum(g is None for g in gpus)
        self.slots = [_Slot(self, g, f"local-gpu{g}" if g is not None else
                            "local-cpu" if n_cpu == 1 else f"local-cpu{i}")
                      for i, g in enumerate(gpus)]
        for s in self.slots:
            s.thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().shutdown(wait=False))

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                pass

    def submit(self, job: EvalJob) -> "Future[JobResult]":
        if self.closed:
            raise ExecutorError("the executor was shut down")
        fut: Future[JobResult] = Future()
        self.queue.put(_Item(job, fut))
        return fut

    def workers(self) -> list[WorkerStatus]:
        return [s.snapshot() for s in self.slots]

    @property
    def capacity(self) -> int:
        return len(self.slots)

    def shutdown(self, wait: bool = True) -> None:
        if self.closed and not (not wait and not self.abandon):
            return
        self.closed = True
        self.abandon = self.abandon or not wait
        for item in self.queue.drain():
            if not item.future.cancel():
                item.future.set_exception(ExecutorError("the executor was shut down"))
        self.queue.wake_all()
        if not wait:  # abandon running jobs: stop the workers now
            for s in self.slots:
                proc = s.proc
                if proc is not None and proc.poll() is None:
                    stop_tree(proc, list(s.known), term_wait_s=self.term_wait_s)
        for s in self.slots:
            if s.thread is not threading.current_thread():
                s.thread.join(timeout=None if wait else 30)
