"""Helpers for tests/test_scaleout.py: a slow job runner for the local executor's workers
(imported inside the worker processes as `tests.scaleout_support:sleepy_runner`)."""

from __future__ import annotations

import time
from pathlib import Path

from evolve.executors.base import EvalJob, JobResult


def sleepy_runner(job: EvalJob, gpu, workdir: Path, on_stage=None, baseline_cache=None,
                  worker: str = "", **kw) -> JobResult:
    """Sleeps for float(job.source) seconds, announcing a compile then a timing stage."""
    t0 = time.monotonic()
    seconds = float(job.source)
    if on_stage:
        on_stage("import")
    time.sleep(seconds / 2)
    if on_stage:
        on_stage("timing")
    time.sleep(seconds / 2)
    return JobResult(job_id=job.job_id, kind=job.kind, worker=worker, gpu=gpu,
                     data={"status": "ok", "score": 1.0, "started": t0, "ended": time.monotonic(),
                           "attempt": job.attempt},
                     seconds=time.monotonic() - t0, stages={"compile": seconds / 2,
                                                           "timing": seconds / 2})
