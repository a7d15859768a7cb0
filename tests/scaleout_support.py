"""Helpers for tests/test_scaleout.py: a slow job runner for the local executor's slots."""

from __future__ import annotations

import time
from pathlib import Path

from evolve.executors.base import EvalJob, JobResult


def sleepy_runner(job: EvalJob, gpu, workdir: Path, on_stage=None, baseline_cache=None,
                  worker: str = "", compile_threads=None, spares=None, lane=None) -> JobResult:
    """Sleeps for float(job.source) seconds: half "compiling", half holding the lane's gate
    (when given; "gate" / "ungate" in the data: when it held it); source "raise" raises (a
    runner bug)."""
    if job.source == "raise":
        raise RuntimeError("a runner bug")
    t0 = time.monotonic()
    seconds = float(job.source)
    if on_stage:
        on_stage("import")
    time.sleep(seconds / 2)
    release = lane.acquire(job.job_id) if lane is not None else (lambda: None)
    gate = time.monotonic()
    try:
        time.sleep(seconds / 2)
    finally:
        ungate = time.monotonic()
        release()
    return JobResult(job_id=job.job_id, kind=job.kind, worker=worker, gpu=gpu,
                     data={"status": "ok", "score": 1.0, "started": t0, "ended": time.monotonic(),
                           "attempt": job.attempt, "gate": gate, "ungate": ungate})
