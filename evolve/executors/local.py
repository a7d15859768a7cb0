"""LocalExecutor: threads in the orchestrator process running jobs with
`evolve.jobs.run_job`, per GPU one slot: two threads with overlap (`overlap=True`: the
next job compiles while one holds the GPU's gate, lane.py), else one; two timings never
share a GPU. Without a GPU (the interpreter) a slot runs one job at a time.

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
from evolve.executors.lane import Lane
from evolve.executors.procs import (compile_threads, descendants, host_cpus, kill_procs,
                                    overlap_depth)
from evolve.jobs import BaselineCache, SparePool, run_job

Runner = Callable[..., JobResult]  # run_job's signature


class _Slot(WorkerSlot):
    """One GPU: its lane (gate; 2-3 jobs in flight with overlap), its threads (one per job
    in flight), its baseline cache, its spare evaluator worker, its log."""

    def __init__(self, ex: "LocalExecutor", gpu: int | None, name: str):
        super().__init__(name, gpu, ex.on_change, ex.log_dir / f"worker-{name}.log")
        self.ex, self.gpu = ex, gpu
        self.lane = Lane(on_change=self.sync)
        self.max_jobs = ex.jobs_per_slot or (
            overlap_depth(host_cpus(), len(ex.gpus)) if ex.overlap and gpu is not None else 1)
        self.cache = BaselineCache(ex.baseline_ttl_s)
        self.spares = SparePool(gpu, ex.workdir / f"spares-{name}", log=self.log) \
            if ex.prestart else None
        self.threads = [threading.Thread(target=self._run, name=f"evolve-{name}-{i}", daemon=True)
                        for i in range(self.max_jobs)]
        self._left = len(self.threads)
        self._left_lock = threading.Lock()

    def start(self) -> None:
        self.count(pid=os.getpid())
        self.set("idle")
        if self.spares is not None:
            self.spares.refill()  # the first job's evaluator worker imports while we wait
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        queue = self.ex.queue
        try:
            while self.lane.wait_turn(self.max_jobs, stop=lambda: queue.closed):
                item = queue.get(timeout=0.5)
                if item is None:
                    self.lane.cancel()
                    if queue.closed:
                        break
                    continue
                job, fut = item
                self.lane.begin(job.job_id)
                try:
                    fut.set_result(self._job(job))
                finally:
                    self.lane.end(job.job_id)
        finally:
            with self._left_lock:
                self._left -= 1
                last = self._left == 0
            if last:
                if self.spares is not None:
                    self.spares.close()
                self.set("stopped")

    def _job(self, job: EvalJob) -> JobResult:
        self.log(f"job {job.job_id}")
        threads = compile_threads(host_cpus(), len(self.ex.slots), max(1, self.max_jobs - 1))
        try:
            res = self.ex.runner(job, self.gpu, self.ex.workdir, baseline_cache=self.cache,
                                 worker=self.name, compile_threads=threads, spares=self.spares,
                                 lane=self.lane)
        except Exception as e:  # a runner bug: this job fails, the slot lives on
            self.log(traceback.format_exc())
            res = JobResult.failed(job, self.name, self.gpu,
                                   error=f"the runner raised: {type(e).__name__}: {e}"[:2000])
        res.worker, res.gpu = self.name, self.gpu
        self.count(done=1)
        return res


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, gpus: list[int | None], workdir: Path, *, log_dir: Path | None = None,
                 baseline_ttl_s: float = 600.0, runner: Runner = run_job,
                 on_change: Callable[[], None] | None = None, prestart: bool = True,
                 overlap: bool = True, jobs_per_slot: int | None = None):
        if not gpus:
            raise ExecutorError("no evaluation workers: give at least one GPU (or None)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir) if log_dir else self.workdir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.baseline_ttl_s, self.runner, self.prestart = baseline_ttl_s, runner, prestart
        self.overlap = overlap  # a GPU slot runs 2-3 jobs: one or two compile while one times
        self.gpus = list(gpus)
        self.jobs_per_slot = jobs_per_slot  # tests: that many jobs per slot, GPU or not
        self.on_change = on_change
        self.queue = JobQueue()
        self._before = set(descendants(os.getpid()))  # not ours to kill on abandon
        n_cpu = sum(g is None for g in gpus)
        self.slots = [_Slot(self, g, f"local-gpu{g}" if g is not None else
                            "local-cpu" if n_cpu == 1 else f"local-cpu{i}")
                      for i, g in enumerate(gpus)]
        for s in self.slots:
            s.start()
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().shutdown(wait=False))

    def submit(self, job: EvalJob) -> "Future[JobResult]":
        return self.queue.submit(job)

    def shutdown(self, wait: bool = True) -> None:
        self.queue.close()  # queued jobs never start
        if not wait:  # abandon the running jobs: kill their evaluator processes
            kill_procs([p for p in descendants(os.getpid()) if p not in self._before])
        for s in self.slots:
            for t in s.threads:
                if t is not threading.current_thread():
                    t.join(timeout=None if wait else 30)
            shutil.rmtree(self.workdir / f"spares-{s.name}", ignore_errors=True)
