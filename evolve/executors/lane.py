"""One GPU's lane: its gate, what each job in flight on it is doing, and when the next
job may start (the overlap of compile and timing, issue #19).

A job is in flight from `begin` to `end`; its phase is `compile` (its evaluation's CPU
part: worker start, import, precompile), `wait` (asked for the GPU), `timing` (holds
the gate: the evaluation's GPU part, from the worker's gate until its worker and checker
are gone) or `after` (gate given back, the result being assembled). `acquire(job,
exclusive)` is what `evaluator.evaluate(acquire_gpu=...)` calls: it blocks until the gate
is free and returns the release. So two evaluations never share the GPU.

Exclusive evaluations (those that time the baselines a worker's cache hands to later
evaluations, and rematches) take the gate only when no other job of the lane is in its
CPU part, and no job starts while one is in flight: nothing another candidate runs
before its gate (see evaluator/worker.py) can slow the numbers that later scores divide
by, nor one side of a rematch.

`may_start(max_jobs)`: a lane with `max_jobs` 2 or 3 (overlap on; 3 where the host has
the CPUs, `procs.overlap_depth`) starts another job while at most `max_jobs - 2` jobs in
flight compile: with 2, once every job waits for, holds or has given back the gate (the
next one compiles while this one times); with 3, also beside one job that compiles (two
compile while one times, so a job's second compile, the full suite after the pre-screen,
need not leave the GPU idle; tests/test_overlap.py's Gluon-like jobs: GPU idle 0.22 ->
0.14 s of 3.5 s against requiring every job past its compile); with 1 (overlap off, or
the interpreter) one job at a time. A slot thread first `reserve`s its place
(`wait_turn`), then takes a job from the queue (`begin`) or gives the place back
(`cancel`). `on_change(phases)` hears every change (the slot's counters).
"""

from __future__ import annotations

import threading
from typing import Callable

PHASES = ("compile", "wait", "timing", "after")


class Lane:
    def __init__(self, on_change: Callable[[dict[str, str]], None] | None = None):
        self.on_change = on_change
        self._cv = threading.Condition()
        self.phases: dict[str, str] = {}   # job id -> phase
        self.exclusive: set[str] = set()   # jobs whose evaluation is exclusive right now
        self.holder: str | None = None     # the job holding the gate
        self.reserved = 0                  # slot threads about to take a job

    # ---- jobs -------------------------------------------------------------------------
    def _set(self, job_id: str, phase: str | None) -> None:
        """(under the condition) A job's phase (None: gone); tells the listener."""
        if phase is None:
            self.phases.pop(job_id, None)
        else:
            self.phases[job_id] = phase
        self._cv.notify_all()
        snapshot = dict(self.phases)
        if self.on_change is not None:
            try:
                self.on_change(snapshot)
            except Exception:  # a display callback never stops a worker
                pass

    def may_start(self, max_jobs: int) -> bool:
        """Whether another job may start now (see the module docstring)."""
        with self._cv:
            return self._may_start(max_jobs)

    def snapshot(self, max_jobs: int) -> tuple[dict[str, str], bool]:
        """The phases of the jobs in flight and `may_start(max_jobs)`, taken together."""
        with self._cv:
            return dict(self.phases), self._may_start(max_jobs)

    def _may_start(self, max_jobs: int) -> bool:
        n = len(self.phases) + self.reserved
        if n == 0:
            return True
        compiling = sum(p == "compile" for p in self.phases.values())
        return n < max_jobs and not self.reserved and not self.exclusive \
            and compiling <= max_jobs - 2

    def wait_turn(self, max_jobs: int, stop: Callable[[], bool], poll_s: float = 0.5) -> bool:
        """Block until a job may start, then reserve the place; False once `stop()`."""
        with self._cv:
            while not self._may_start(max_jobs):
                if stop():
                    return False
                self._cv.wait(poll_s)
            self.reserved += 1
            return True

    def cancel(self) -> None:
        """Give a reserved place back (no job came)."""
        with self._cv:
            self.reserved = max(0, self.reserved - 1)
            self._cv.notify_all()

    def begin(self, job_id: str, reserved: bool = True) -> None:
        with self._cv:
            if reserved:
                self.reserved = max(0, self.reserved - 1)
            self._set(job_id, "compile")

    def end(self, job_id: str) -> None:
        with self._cv:
            self.exclusive.discard(job_id)
            if self.holder == job_id:  # never leaked, whatever the runner did
                self.holder = None
            self._set(job_id, None)

    # ---- the gate ---------------------------------------------------------------------
    def acquire(self, job_id: str, exclusive: bool = False) -> Callable[[], None]:
        """Block until the GPU is this job's; returns the release (idempotent)."""
        with self._cv:
            if exclusive:
                self.exclusive.add(job_id)
            self._set(job_id, "wait")
            while self.holder is not None or (exclusive and any(
                    p == "compile" for j, p in self.phases.items() if j != job_id)):
                self._cv.wait()
            self.holder = job_id
            self._set(job_id, "timing")
        done = threading.Event()

        def release() -> None:
            with self._cv:
                if done.is_set():
                    return
                done.set()
                if self.holder == job_id:
                    self.holder = None
                self.exclusive.discard(job_id)
                if job_id in self.phases:
                    self._set(job_id, "after")
                else:
                    self._cv.notify_all()

        return release

    def back_to_compile(self, job_id: str) -> None:
        """The job starts another evaluation (the full suite after the quick pre-screen)."""
        with self._cv:
            if job_id in self.phases and self.holder != job_id:
                self._set(job_id, "compile")
