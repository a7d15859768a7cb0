"""The evolution loop (the orchestrator): seed, then select -> vary -> dedup -> evaluate ->
record, with N proposers and one evaluation worker per GPU working at once.

The orchestrator thread is the run's single writer (SQLite and git). Proposers
(`evolve/proposers.py`) run `operator.propose(ctx)` in threads for contexts the
orchestrator built, and post their DB writes back; evaluations run on the executor's
workers and complete in any order. Without an operator factory (tests, library use) the
one operator is called inline in the orchestrator thread.

Write order for one candidate (crash safety): (1) git commit + refs/candidates/<id> (only
when a worker slot is free: at most `capacity` candidates are committed and unrecorded),
(2) evaluate, (3) one SQLite transaction with the candidate and its measurements,
(4) move refs/heads/best. `reconcile()` (run first on every start/resume) records any
candidate ref without a DB row by evaluating it again, so nothing is lost or doubled.
"""

from __future__ import annotations

import json
import queue
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evolve.champion import ChampionMixin
from evolve.evaluation import EvalData, Evaluations
from evolve.executors.base import EvalJob
from evolve.intake import (  # noqa: F401 - re-exported
    MAX_CONSECUTIVE_DUPLICATES,
    MAX_CONSECUTIVE_NONE,
    MAX_CONSECUTIVE_OPERATOR_ERRORS,
    IntakeMixin,
    LoopOutcome,
)
from evolve.operators.base import Operator, Proposal
from evolve.progress import PlainProgress
from evolve.proposers import ProposerPool
from evolve.records import Candidate, Event, utc_now
from evolve.recording import Pending, pending_from_commit, sha256_text, to_records
from evolve.run import RunHandle
from evolve.selection import SelectionPolicy

WORKERS_SNAPSHOT_S = 2.0


@dataclass
class Budget:
    max_candidates: int | None = None  # total in the run, seed included
    max_minutes: float | None = None  # this invocation
    max_usd: float | None = None  # total over the run


@dataclass
class _InFlight:
    pending: Pending
    job: EvalJob
    future: Any
    retried: bool = False


class EvolutionLoop(ChampionMixin, IntakeMixin):
    def __init__(self, run: RunHandle, operator: Operator, progress: PlainProgress,
                 budget: Budget, evaluations: Evaluations | None = None,
                 gpu: bool | None = None, *,
                 operator_factory: Callable[[Any], Operator] | None = None,
                 proposers: int | None = None):
        self.run = run
        self.store = run.store
        self.repo = run.repo
        self.operator = operator
        self.progress = progress
        self.budget = budget
        self.evals = evaluations or Evaluations(run)
        self.gpu = run.config.gpu if gpu is None else gpu
        cfg = run.config
        self.policy = SelectionPolicy(cfg.tournament_k, cfg.explore_prob, cfg.crossover_prob)
        self.rng = random.Random(f"{cfg.rng_seed}:{self.store.next_candidate_id()}")
        self.t0 = time.monotonic()
        self.factory = operator_factory
        self.n_proposers = max(1, int(proposers or cfg.proposers or 1)) if operator_factory else 1
        self.inbox: queue.Queue[tuple] = queue.Queue()
        self.pool: ProposerPool | None = None
        self.ready: list[Proposal] = []  # deduplicated proposals not committed yet
        self.in_flight: dict[int, _InFlight] = {}  # committed candidates being evaluated
        self.shas: set[str] = set()  # sources ready or in flight
        self.waiting: list[int] = []  # proposer slots waiting for a context
        self.busy: set[int] = set()  # proposer slots in propose()
        self.dead: set[int] = set()
        self.stop: LoopOutcome | None = None
        self.next_cid = 0
        self.nones = self.dups = self.errors = 0
        self._snap_t = 0.0
        self.init_champion()

    # --- logging -------------------------------------------------------------

    def log(self, line: str) -> None:
        with open(self.run.paths.run_log, "a", encoding="utf-8") as f:
            f.write(f"{utc_now()} {line}\n")

    def event(self, kind: str, message: str = "", cid: int | None = None,
              data: dict[str, Any] | None = None) -> None:
        self.store.add_event(Event(kind=kind, message=message, candidate_id=cid,
                                   data_json=json.dumps(data or {}, default=str)))
        self.log(f"[{kind}] {'#' + str(cid) + ' ' if cid is not None else ''}{message}")

    # --- main ----------------------------------------------------------------

    def run_loop(self) -> LoopOutcome:
        abandon = True
        try:
            self.reconcile()
            if self.store.get_candidate(0) is None:
                self.add_seed()
            self._refresh_progress()
            if not self.store.candidates("ok"):
                seed = self.store.get_candidate(0)
                why = f"{seed.failure_class}: {seed.failure_message}" if seed else "no seed"
                abandon = False
                return LoopOutcome("finished", f"no correct candidate to vary (seed rejected: "
                                   f"{why})", failed=True)
            self.next_cid = max([self.store.next_candidate_id()]
                                + [c + 1 for c in self.repo.candidate_refs()])
            out = self._orchestrate()
            abandon = False
            return out
        finally:
            self._shutdown(abandon)

    def _orchestrate(self) -> LoopOutcome:
        if self.factory is not None:
            self.pool = ProposerPool(self.n_proposers, self.factory, self.run, self.inbox,
                                     self.evals.probe)
            self.pool.start()
        else:
            self.waiting = [0]
        while True:
            self._dispatch()
            if self.stop is None:
                reason = self.budget_reached()
                if reason:
                    self._set_stop(LoopOutcome("stopped", reason))
            if self.stop is not None and self._drained():
                return self.stop
            handed = self._hand_out()
            try:
                msg = self.inbox.get_nowait() if handed else self.inbox.get(timeout=0.5)
            except queue.Empty:
                msg = None
            while msg is not None:
                self._handle(msg)
                try:
                    msg = self.inbox.get_nowait()
                except queue.Empty:
                    msg = None
            self._snapshot_workers()

    def _drained(self) -> bool:
        return not self.in_flight and self.rematch is None and not self.busy

    def _set_stop(self, outcome: LoopOutcome) -> None:
        if self.stop is not None:
            return
        self.stop = outcome
        for prop in self.ready:  # not committed: nothing to undo
            self.shas.discard(sha256_text(prop.source))
            self.log(f"[dropped] proposal from #{prop.parent_id} ({outcome.reason})")
        self.ready = []
        if self.pool is not None:
            for slot in self.waiting:
                self.pool.give(slot, None)
        self.waiting = []

    def _handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "write":
            getattr(self.store, msg[1])(*msg[2])
        elif kind == "want":
            if self.stop is not None and self.pool is not None:
                self.pool.give(msg[1], None)
            else:
                self.waiting.append(msg[1])
        elif kind == "proposal":
            self._on_outcome(msg[1])
        elif kind == "done":
            self._on_done(msg[1])
        elif kind == "rematch":
            self.on_rematch_done()
        elif kind == "fatal":
            self.busy.discard(msg[1])
            self.dead.add(msg[1])
            self.event("operator_error", f"proposer {msg[1]} failed: {msg[2]}"[:500], None,
                       {"traceback": msg[3]})
            if len(self.dead) >= self.n_proposers:
                self._set_stop(LoopOutcome("finished", f"every proposer failed ({msg[2]})"))
        elif kind == "exit":
            self.busy.discard(msg[1])

    def budget_reached(self) -> str | None:
        b = self.budget
        n = self.store.next_candidate_id()
        if b.max_candidates is not None and n >= b.max_candidates:
            return f"candidate budget reached ({n}/{b.max_candidates})"
        if b.max_minutes is not None and time.monotonic() - self.t0 >= b.max_minutes * 60:
            return f"time budget reached ({b.max_minutes:g} min)"
        if b.max_usd is not None:
            cost = self.store.totals()["cost_usd"]
            if cost >= b.max_usd:
                return f"cost budget reached (${cost:.4f} of ${b.max_usd:g})"
        return None

    def brief(self) -> dict[str, Any]:
        best = self.store.best()
        return {"best_id": best.id if best else None, "best_score": best.score if best else None,
                "candidates": self.store.next_candidate_id(), "gpu": self.gpu}

    # --- one candidate ---------------------------------------------------------

    def add_seed(self) -> None:
        seed_file = Path(self.run.config.seed_file)
        p = Pending(cid=0, source=seed_file.read_text(encoding="utf-8"),
                    hypothesis=f"seed kernel {seed_file.name}", operator="seed",
                    changes={"seed_file": str(seed_file)})
        p.commit_sha = self.repo.commit_candidate(0, p.source, [], p.message())
        self.log(f"[commit] #0 {p.commit_sha[:10]} seed")
        cand = self.evaluate_and_record(p)
        self.event("seed", f"seed {seed_file.name}: {cand.status}", 0,
                   {"score": cand.score, "failure_class": cand.failure_class})

    def _commit(self, prop: Proposal) -> Pending:
        parent = self.store.get_candidate(prop.parent_id)
        parents = [parent.commit_sha]
        if prop.parent2_id is not None:
            parents.append(self.store.get_candidate(prop.parent2_id).commit_sha)
        cid = self.next_cid
        self.next_cid += 1
        p = Pending(cid=cid, source=prop.source, hypothesis=prop.hypothesis or "(none given)",
                    operator=prop.operator or self.operator.name, parent_id=prop.parent_id,
                    parent2_id=prop.parent2_id, changes=prop.changes or {},
                    session_id=prop.session_id, tokens_in=prop.tokens_in,
                    tokens_out=prop.tokens_out, cost_usd=prop.cost_usd,
                    variation_seconds=prop.variation_seconds, depth=parent.depth + 1)
        p.commit_sha = self.repo.commit_candidate(cid, p.source, parents, p.message())
        self.log(f"[commit] #{cid} {p.commit_sha[:10]} parents {parents}")
        return p

    def _dispatch(self) -> None:
        """Commit and submit ready proposals while a worker slot is free."""
        if self.stop is not None or not self.ready:
            return
        capacity = self.evals.executor.capacity
        while self.ready and len(self.in_flight) < capacity:
            self._submit(self._commit(self.ready.pop(0)))

    def _submit(self, p: Pending, retried: bool = False) -> None:
        job, fut = self.evals.submit_candidate(p.cid, p.source, self.prescreen())
        self.in_flight[p.cid] = _InFlight(p, job, fut, retried)
        fut.add_done_callback(lambda f, cid=p.cid: self.inbox.put(("done", cid)))
        first = p.hypothesis.splitlines()[0] if p.hypothesis else ""
        self.progress.started(p.cid, first[:100])

    def _on_done(self, cid: int) -> None:
        f = self.in_flight.pop(cid)
        result = self.evals.finish_candidate(cid, f.job, f.future.result())
        if not f.retried and self._internal(cid, result):
            self._submit(f.pending, retried=True)
            return
        self._record(f.pending, result, wait=False)

    def _internal(self, cid: int, result: EvalData) -> bool:
        """An evaluator fault is never the candidate's: it gets one more try."""
        if result.ok or result.failure is None or result.failure.cls != "internal":
            return False
        self.event("warning", f"internal evaluator error on #{cid}, evaluating again: "
                   f"{result.failure.message}"[:500], cid)
        return True

    def evaluate_and_record(self, p: Pending) -> Candidate:
        """Evaluate and record one committed candidate, blocking (seed, orphans)."""
        first = p.hypothesis.splitlines()[0] if p.hypothesis else ""
        self.progress.started(p.cid, first[:100])
        result = self.evals.candidate(p.cid, p.source, self.prescreen())
        if self._internal(p.cid, result):
            result = self.evals.candidate(p.cid, p.source, self.prescreen())
        return self._record(p, result, wait=True)

    def _record(self, p: Pending, result: Any, wait: bool) -> Candidate:
        cand, rows = to_records(p, result)
        self.store.add_candidate(cand, rows)
        self.shas.discard(p.source_sha256)
        self.log(f"[recorded] #{cand.id} {cand.status} score={cand.score} "
                 f"failure={cand.failure_class}")
        self.update_champion(cand, wait=wait)
        self._refresh_progress()
        first = p.hypothesis.splitlines()[0] if p.hypothesis else ""
        if cand.ok:
            self.progress.finished(f"#{cand.id} ok score {cand.score:.4g} ({first[:60]})",
                                   cid=cand.id)
        else:
            fail = f"#{cand.id} {cand.failure_class}: {(cand.failure_message or '')[:160]}"
            self.progress.finished(f"#{cand.id} rejected ({cand.failure_class})", fail,
                                   cid=cand.id)
        return cand

    def _refresh_progress(self) -> None:
        s = self.progress.state
        s.done = self.store.next_candidate_id()
        best = self.store.best()
        s.best_id, s.best_score = (best.id, best.score) if best else (None, None)
        s.cost_usd = self.store.totals()["cost_usd"]

    # --- workers and shutdown ----------------------------------------------------

    def _snapshot_workers(self, force: bool = False, executor: Any = None) -> None:
        ex = executor or self.evals.current
        now = time.monotonic()
        if ex is None or (not force and now - self._snap_t < WORKERS_SNAPSHOT_S):
            return
        self._snap_t = now
        try:
            workers = ex.workers()
            self.store.upsert_workers([w.to_dict() for w in workers])
            self.progress.workers(workers)
        except Exception as e:  # utilisation is informative: never stop the run for it
            self.log(f"[warning] workers snapshot failed: {type(e).__name__}: {e}")

    def _shutdown(self, abandon: bool) -> None:
        """Stop the proposers, apply their last writes, stop the executor."""
        if self.pool is not None:
            self.pool.stop()
            self.pool.join(2.0 if abandon else 30.0)
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                break
            if msg[0] == "write":
                try:
                    self._handle(msg)
                except Exception as e:
                    self.log(f"[warning] a proposer's write failed: {e}")
        ex = self.evals.current
        self.evals.shutdown(wait=not abandon)
        if ex is not None:
            self._snapshot_workers(force=True, executor=ex)

    # --- crash recovery --------------------------------------------------------

    def reconcile(self) -> None:
        """Record orphan refs (re-evaluating them), restore missing refs, fix the best ref."""
        # we hold the run lock: any scratch dir left is from a loop that died mid-evaluation
        if self.run.paths.scratch.is_dir():
            for leftover in self.run.paths.scratch.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
        refs = self.repo.candidate_refs()
        recorded = self.store.candidate_ids()
        for cid in sorted(set(refs) - recorded):
            p = pending_from_commit(self.repo, cid)
            self.event("orphan_recovered", f"candidate #{cid} had a commit but no record: "
                       "evaluating it again", cid, {"commit": p.commit_sha})
            self.progress.note(f"recovering #{cid} (its evaluation was cut short)")
            cand = self.evaluate_and_record(p)
            if cid == 0:
                self.event("seed", f"seed: {cand.status}", 0, {"score": cand.score,
                                                               "failure_class": cand.failure_class})
        for cid in sorted(recorded - set(refs)):
            cand = self.store.get_candidate(cid)
            self.repo.restore_ref(cid, cand.commit_sha)
            self.event("warning", f"restored missing ref of #{cid}", cid)
        best = self.store.best()
        if best is not None and self.repo.best_sha() != best.commit_sha:
            self.repo.set_best(best.id)
