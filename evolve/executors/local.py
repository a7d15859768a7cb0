"""LocalExecutor: one thread per GPU in the orchestrator process, each running one job at
a time with `evolve.jobs.run_job` (so two timings never share a GPU).

Threads, not worker processes: `evaluator.evaluate` already runs every candidate in its
own sandboxed process group with its own timeouts, so a candidate can neither crash nor
hang this process; a thread only waits for it. Each thread's slot keeps its GPU's
baseline cache and its pre-started spare evaluator worker. A runner that raises gives an
error result (the slot serves the next job); a job is never lost here (a worker fault is
an `internal` rejection, which the loop evaluates once more). `shutdown(wait=False)`
(SIGINT/SIGTERM) kills the evaluator processes started since the executor began; after
kill -9 bwrap's --die-with-parent and stdin EOF end them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
import traceback
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from evolve.executors.base import (EvalJob, Executor, ExecutorError, JobQueue, JobResult,
                                   WorkerSlot)
from evolve.executors.procs import compile_threads, descendants, host_cpus, kill_procs
from evolve.jobs import BaselineCache, SparePool, run_job, stage_group

Runner = Callable[..., JobResult]  # run_job's signature


class _Slot(WorkerSlot):
    """One GPU: its thread, its baseline cache, its spare evaluator worker, its log."""

    def __init__(self, ex: "LocalExecutor", gpu: int | None, name: str):
        super().__init__(name, gpu, ex.on_change, ex.log_dir / f"worker-{name}.log")
        self.ex, self.gpu = ex, gpu
        self.cache = BaselineCache(ex.baseline_ttl_s)
        self.spares = SparePool(gpu, ex.workdir / f"spares-{name}", log=self.log) \
            if ex.prestart else None
        self.thread = threading.Thread(target=self._run, name=f"evolve-{name}", daemon=True)

    def _stage(self, stage: str) -> None:
        self.set(stage_group(stage) or "busy", keep_job=True)

    def _run(self) -> None:
        self.count(pid=os.getpid())
        self.set("idle")
        if self.spares is not None:
            self.spares.refill()  # the first job's evaluator worker imports while we wait
        try:
            while (item := self.ex.queue.get()) is not None:
                job, fut = item
                fut.set_result(self._job(job))
        finally:
            if self.spares is not None:
                self.spares.close()
            self.set("stopped")

    def _job(self, job: EvalJob) -> JobResult:
        self.set("busy", job.job_id)
        self.log(f"job {job.job_id}")
        threads = compile_threads(host_cpus(), len(self.ex.slots))
        try:
            res = self.ex.runner(job, self.gpu, self.ex.workdir, on_stage=self._stage,
                                 baseline_cache=self.cache, worker=self.name,
                                 compile_threads=threads, spares=self.spares)
        except Exception as e:  # a runner bug: this job fails, the slot lives on
            self.log(traceback.format_exc())
            res = JobResult.failed(job, self.name, self.gpu,
                                   error=f"the runner raised: {type(e).__name__}: {e}"[:2000])
        res.worker, res.gpu = self.name, self.gpu
        self.count(done=1)
        self.set("idle")
        return res


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, gpus: list[int | None], workdir: Path, *, log_dir: Path | None = None,
                 baseline_ttl_s: float = 600.0, runner: Runner = run_job,
                 on_change: Callable[[], None] | None = None, prestart: bool = True):
        if not gpus:
            raise ExecutorError("no evaluation workers: give at least one GPU (or None)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir) if log_dir else self.workdir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.baseline_ttl_s, self.runner, self.prestart = baseline_ttl_s, runner, prestart
        self.on_change = on_change
        self.queue = JobQueue()
        self._before = set(descendants(os.getpid()))  # not ours to kill on abandon
        n_cpu = sum(g is None for g in gpus)
        self.slots = [_Slot(self, g, f"local-gpu{g}" if g is not None else
                            "local-cpu" if n_cpu == 1 else f"local-cpu{i}")
                      for i, g in enumerate(gpus)]
        for s in self.slots:
            s.thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().shutdown(wait=False))

    def submit(self, job: EvalJob) -> "Future[JobResult]":
        return self.queue.submit(job)

    def shutdown(self, wait: bool = True) -> None:
        self.queue.close()  # queued jobs never start
        if not wait:  # abandon the running jobs: kill their evaluator processes
            kill_procs([p for p in descendants(os.getpid()) if p not in self._before])
        for s in self.slots:
            if s.thread is not threading.current_thread():
                s.thread.join(timeout=None if wait else 30)
            shutil.rmtree(self.workdir / f"spares-{s.name}", ignore_errors=True)
