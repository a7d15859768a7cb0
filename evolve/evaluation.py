"""Evaluations for the loop: EvalJobs submitted to the run's executor, per-candidate logs.

The orchestrator never imports candidate code: a job carries the source text to a worker
(`evolve.jobs.run_job` writes it to a file and hands the path to the evaluator, which runs
it in an isolated process). Results come back as plain dicts (`EvalData` wraps one);
the orchestrator writes each job's log to `logs/<id>.log` (probes: `logs/probe-*.log`).
A job lost twice by its worker, or one the evaluator refused, becomes a rejection of
class `internal`.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from evolve.executors.base import EvalJob, Executor, JobResult
from evolve.run import RunHandle


class JobError(RuntimeError):
    """An operator-requested evaluation could not be run (evaluator refused it, worker lost)."""


class EvalData:
    """A result dict (EvalResult.to_dict() shape) with the attributes the loop reads."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data

    @property
    def status(self) -> str:
        return str(self.data.get("status"))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def score(self) -> float | None:
        return self.data.get("score")

    @property
    def failure(self) -> Any:
        from evaluator import Failure
        return Failure.from_dict(self.data.get("failure"))


@dataclass
class RematchOutcome:
    better: bool
    data: dict[str, Any]


def internal(job: EvalJob, message: str) -> dict[str, Any]:
    """The result dict recorded for a job that produced no evaluation."""
    return {"status": "rejected", "failure": {"class": "internal", "message": message[:2000],
                                              "shape": None},
            "score": None, "target": job.target, "suite": job.suite, "device": "",
            "timing": "", "shapes": [], "validation": {}, "repeats": [], "env": {},
            "wall_s": 0.0, "log_tail": ""}


def result_data(job: EvalJob, res: JobResult) -> dict[str, Any]:
    if res.lost:
        return internal(job, f"evaluation worker lost: {res.lost}")
    if res.error or not res.data:
        return internal(job, f"evaluation failed: {res.error or 'no result'}")
    return res.data


class Evaluations:
    """Submits a run's evaluations (candidates, operator probes, rematches) to its executor.
    Thread-safe: proposer threads submit probes while the orchestrator submits candidates."""

    def __init__(self, run: RunHandle, executor: Executor | None = None):
        self.run = run
        self._executor = executor
        self._lock = threading.Lock()
        self._counter = itertools.count()

    @property
    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                from evolve.executors import executor_for
                self._executor = executor_for(self.run.config, self.run.paths.scratch,
                                              self.run.paths.logs)
            return self._executor

    @property
    def current(self) -> Executor | None:
        """The executor if one was started (never starts one)."""
        return self._executor

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=wait)

    def job(self, kind: str, job_id: str, source: str, suite: str | None = None,
            **kw: Any) -> EvalJob:
        cfg = self.run.config
        return EvalJob(job_id=job_id, kind=kind, target=cfg.target, suite=suite or cfg.suite,
                       source=source, timeout_s=float(cfg.eval_timeout_s),
                       baselines=list(cfg.baselines), **kw)

    # --- candidates ------------------------------------------------------------

    def submit_candidate(self, cid: int, source: str,
                         prescreen: dict[str, Any] | None = None) -> tuple[EvalJob, Future]:
        log = self.run.paths.eval_log(cid)
        if log.exists():  # an earlier attempt (killed, or retried): keep it aside
            log.replace(log.with_suffix(f".earlier-{uuid.uuid4().hex[:6]}.log"))
        job = self.job("candidate", f"cand-{cid}-{next(self._counter)}", source,
                       prescreen=prescreen)
        return job, self.executor.submit(job)

    def finish_candidate(self, cid: int, job: EvalJob, res: JobResult) -> EvalData:
        """The candidate's result; its log goes to logs/<cid>.log."""
        self._write_log(self.run.paths.eval_log(cid), res)
        return EvalData(result_data(job, res))

    def candidate(self, cid: int, source: str,
                  prescreen: dict[str, Any] | None = None) -> EvalData:
        job, fut = self.submit_candidate(cid, source, prescreen)
        return self.finish_candidate(cid, job, fut.result())

    # --- operator probes -------------------------------------------------------

    def probe(self, source: str, suite: str) -> EvalData:
        """An operator-requested evaluation (the agent's evaluate tool); blocks its caller."""
        name = f"probe-{uuid.uuid4().hex[:8]}-{next(self._counter)}"
        job = self.job("probe", name, source, suite)
        res = self.executor.submit(job).result()
        self._write_log(self.run.paths.logs / f"{name}.log", res)
        if res.lost or res.error or not res.data:
            raise JobError(res.lost or res.error or "no result")
        return EvalData(res.data)

    # --- rematches ---------------------------------------------------------------

    def submit_rematch(self, challenger_cid: int, champion_cid: int, challenger_source: str,
                       champion_source: str) -> tuple[EvalJob, Future]:
        name = f"rematch-{challenger_cid}-vs-{champion_cid}"
        job = self.job("rematch", f"{name}-{next(self._counter)}", challenger_source,
                       champion_source=champion_source, rounds=int(self.run.config.rematch_rounds))
        return job, self.executor.submit(job)

    def finish_rematch(self, challenger_cid: int, champion_cid: int, job: EvalJob,
                       res: JobResult) -> RematchOutcome:
        self._write_log(self.run.paths.logs / f"rematch-{challenger_cid}-vs-{champion_cid}.log",
                        res)
        if res.lost or res.error or not res.data:
            raise JobError(res.lost or res.error or "no result")
        data = dict(res.data)
        data.update(challenger=challenger_cid, champion=champion_cid)
        better = bool(data.get("better")) and not data.get("failure")
        return RematchOutcome(better=better, data=data)

    def rematch(self, challenger_cid: int, champion_cid: int) -> RematchOutcome:
        """Interleaved re-measurement of the challenger against the champion (blocks)."""
        repo = self.run.repo
        job, fut = self.submit_rematch(challenger_cid, champion_cid,
                                       repo.source_at(challenger_cid), repo.source_at(champion_cid))
        return self.finish_rematch(challenger_cid, champion_cid, job, fut.result())

    def _write_log(self, path, res: JobResult) -> None:  # noqa: ANN001
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            text = res.log or ""
            if res.lost:
                text += f"\n[evolve] worker lost: {res.lost}\n"
            path.write_text(text, encoding="utf-8")
        except OSError:
            pass
