"""Evaluations for the loop: EvalJobs submitted to the run's executor, per-candidate logs.

The orchestrator never imports candidate code: a job carries the source text to a worker
(`evolve.jobs.run_job` writes it to a file and hands the path to the evaluator, which runs
it in an isolated process). A `JobResult` comes back; this module writes its log
(`logs/<id>.log`; probes: `logs/probe-*.log`; rematches: `logs/rematch-<a>-vs-<b>.log`)
and turns it into the evaluator's own result type: an `EvalResult` (a job lost twice by
its worker, or one the evaluator refused, becomes a rejection of class `internal`) or a
`CompareResult` for a rematch.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from evaluator import CompareResult, EvalResult, ProfileRequest
from evolve.executors.base import EvalJob, Executor, JobResult
from evolve.records import Candidate
from evolve.run import RunHandle


class JobError(RuntimeError):
    """An evaluation produced no result (the evaluator refused it, its worker was lost)."""


class Evaluations:
    """Submits a run's evaluations (candidates, operator probes, rematches) to its executor.
    Thread-safe: proposer threads run probes while the orchestrator submits candidates."""

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
        """Stop the executor if one was started (it stays `current`: its final workers)."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait)

    def _submit(self, kind: str, name: str, source: str, suite: str | None = None,
                **kw: Any) -> "Future[JobResult]":
        cfg = self.run.config
        return self.executor.submit(EvalJob(
            job_id=f"{name}-{next(self._counter)}", kind=kind, target=cfg.target,
            suite=suite or cfg.suite, source=source, timeout_s=float(cfg.eval_timeout_s),
            baselines=list(cfg.baselines), **kw))

    def _finish(self, path: Path, res: JobResult) -> str | None:
        """Write the job's log to `path`; why the job produced no result (None: it did)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            text = res.log or ""
            if res.lost:
                text += f"\n[evolve] worker lost: {res.lost}\n"
            path.write_text(text, encoding="utf-8")
        except OSError:
            pass
        if res.lost:
            return f"evaluation worker lost: {res.lost}"
        if res.error or not res.data:
            return f"evaluation failed: {res.error or 'no result'}"
        return None

    # --- candidates --------------------------------------------------------------

    def submit_candidate(self, c: Candidate,
                         prescreen: dict[str, Any] | None = None) -> "Future[JobResult]":
        log = self.run.paths.eval_log(c.id)
        if log.exists():  # an earlier attempt (killed, or retried): keep it aside
            log.replace(log.with_suffix(f".earlier-{uuid.uuid4().hex[:6]}.log"))
        return self._submit("candidate", f"cand-{c.id}", c.source, prescreen=prescreen)

    def candidate_result(self, c: Candidate, res: JobResult) -> EvalResult:
        """The candidate's evaluation; its log goes to logs/<id>.log."""
        why = self._finish(self.run.paths.eval_log(c.id), res)
        if why is None:
            return EvalResult.from_dict(res.data)
        cfg = self.run.config
        return EvalResult.rejected(cfg.target, cfg.suite, "internal", why[:2000], device="",
                                   timing="")

    # --- operator probes -----------------------------------------------------------

    def probe(self, source: str, suite: str, profile: ProfileRequest | None = None) -> EvalResult:
        """An operator-requested evaluation (the agent's evaluate, compile_info and profile
        tools; ``profile``: one shape to profile, see evaluator.ProfileRequest); blocks its
        caller."""
        name = f"probe-{uuid.uuid4().hex[:8]}"
        res = self._submit("probe", name, source, suite,
                           profile=profile.to_dict() if profile else None).result()
        why = self._finish(self.run.paths.logs / f"{name}.log", res)
        if why is not None:
            raise JobError(why)
        return EvalResult.from_dict(res.data)

    # --- rematches -----------------------------------------------------------------

    def submit_rematch(self, challenger: Candidate, champion: Candidate) -> "Future[JobResult]":
        repo = self.run.repo
        return self._submit("rematch", f"rematch-{challenger.id}-vs-{champion.id}",
                            repo.source_at(challenger.id),
                            champion_source=repo.source_at(champion.id),
                            rounds=int(self.run.config.rematch_rounds))

    def rematch_result(self, challenger: Candidate, champion: Candidate,
                       res: JobResult) -> CompareResult:
        why = self._finish(self.run.paths.logs / f"rematch-{challenger.id}-vs-{champion.id}.log",
                           res)
        if why is not None:
            raise JobError(why)
        return CompareResult.from_dict(res.data)
