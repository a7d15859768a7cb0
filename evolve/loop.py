"""The evolution loop (the orchestrator): seed, then select -> vary -> dedup -> evaluate ->
record, with N proposers and one evaluation worker per GPU working at once.

The orchestrator thread is the run's single writer (SQLite and git) and reads one inbox of
typed messages: what proposer threads send (`evolve/proposers.py`: contexts wanted,
writes, proposals) and what the executor's futures say when they finish (`Evaluated`,
`RematchDone`). Every evaluation, the seed's included, takes this one path. Without an
operator factory (tests, library use) one proposer thread runs the given operator.

Intake: a proposer gets a context (parents chosen by `selection`, their sources read here)
only while the candidate budget has room for it (committed + ready + in flight <
max_candidates) and fewer than `proposers` deduplicated children wait for a worker. What
comes back is counted (operator errors, empty proposals, duplicates of recorded or
in-flight sources; 5 / 5 / 20 in a row finish the run) or queued as ready.

Write order for one candidate (crash safety): (1) git commit + refs/candidates/<id> (only
when a worker slot is free: at most `capacity` candidates are committed and unrecorded),
(2) evaluate, (3) one SQLite row with the candidate and its evaluation, (4) the champion
rule (`evolve/champion.py`) moves refs/heads/best. `reconcile()` (run first on every
start/resume) records any candidate ref without a DB row by evaluating it again, so
nothing is lost or doubled. An `internal` rejection (the evaluator's fault, never the
candidate's) is evaluated once more.
"""

from __future__ import annotations

import queue
import random
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evolve.champion import Champion
from evolve.evaluation import Evaluations
from evolve.operators.base import Operator, VariationContext
from evolve.display import PlainProgress
from evolve.proposers import (Activity, EventPosted, Exited, Fatal, Proposed, ProposerPool,
                              SessionPosted, Want)
from evolve.records import Candidate, sha256_text
from evolve.run import RunHandle
from evolve.selection import select_parents

WORKERS_SNAPSHOT_S = 2.0
MAX_CONSECUTIVE_NONE = 5
MAX_CONSECUTIVE_DUPLICATES = 20
MAX_CONSECUTIVE_OPERATOR_ERRORS = 5


@dataclass
class Budget:
    max_candidates: int | None = None  # total in the run, seed included
    max_minutes: float | None = None  # this invocation
    max_usd: float | None = None  # total over the run


@dataclass
class LoopOutcome:
    status: str  # "stopped" (budget) | "finished" (nothing more to do)
    reason: str
    failed: bool = False  # the run could not proceed at all (seed rejected, endpoint refused)


@dataclass(frozen=True)
class Evaluated:
    cid: int
    future: Future


@dataclass(frozen=True)
class RematchDone:
    future: Future


class EvolutionLoop:
    def __init__(self, run: RunHandle, operator: Operator, progress: PlainProgress,
                 budget: Budget, evaluations: Evaluations | None = None,
                 gpu: bool | None = None, *,
                 operator_factory: Callable[[Any], Operator] | None = None,
                 proposers: int | None = None):
        self.run, self.store, self.repo = run, run.store, run.repo
        self.operator, self.progress, self.budget = operator, progress, budget
        self.evals = evaluations or Evaluations(run)
        self.gpu = run.config.gpu if gpu is None else gpu
        cfg = run.config
        self.policy = cfg.selection_policy()
        self.rng = random.Random(f"{cfg.rng_seed}:{self.store.next_candidate_id()}")
        self.t0 = time.monotonic()
        self.factory = operator_factory or (lambda view: operator)
        self.n_proposers = max(1, int(proposers or cfg.proposers or 1)) if operator_factory else 1
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.champion = Champion(run, self.evals, self.gpu,
                                 lambda f: self.inbox.put(RematchDone(f)), progress.note)
        self.pool: ProposerPool | None = None
        self.ready: list[Candidate] = []  # deduplicated children not committed yet
        self.in_flight: dict[int, Candidate] = {}  # committed candidates being evaluated
        self.retried: set[int] = set()  # evaluated again after an `internal` rejection
        self.shas: set[str] = set()  # sources ready or in flight
        self.waiting: list[int] = []  # proposer slots waiting for a context
        self.busy: set[int] = set()  # proposer slots in propose()
        self.dead: set[int] = set()
        self.stop: LoopOutcome | None = None
        self.next_cid = 0
        self.nones = self.dups = self.errors = 0
        self._snap_t = 0.0

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
            abandon = out.failed
            return out
        finally:
            self._shutdown(abandon)

    def _orchestrate(self) -> LoopOutcome:
        self.pool = ProposerPool(self.n_proposers, self.factory, self.run, self.inbox)
        self.pool.start()
        while True:
            self._dispatch()
            if self.stop is None:
                reason = self.budget_reached()
                if reason:
                    self._set_stop(LoopOutcome("stopped", reason))
            if self.stop is not None and (self._drained() or self.stop.failed):
                return self.stop  # a failed run does not wait: resume redoes cut evaluations
            self._read_inbox(block=not self._hand_out())

    def _read_inbox(self, block: bool) -> None:
        try:
            msg = self.inbox.get(timeout=0.5) if block else self.inbox.get_nowait()
            while True:
                self._handle(msg)
                msg = self.inbox.get_nowait()
        except queue.Empty:
            pass
        self._snapshot_workers()

    def drain(self) -> None:
        """Handle messages until no evaluation or rematch is in flight (seed, orphans)."""
        while self.in_flight or self.champion.busy:
            self._read_inbox(block=True)

    def _drained(self) -> bool:
        return not self.in_flight and not self.champion.busy and not self.busy

    def _set_stop(self, outcome: LoopOutcome) -> None:
        if self.stop is not None:
            return
        self.stop = outcome
        for child in self.ready:  # not committed: nothing to undo
            self.shas.discard(sha256_text(child.source))
            self.run.log(f"[dropped] proposal from #{child.parent_id} ({outcome.reason})")
        self.ready = []
        for slot in self.waiting:
            self.pool.give(slot, None)
        self.waiting = []

    def _handle(self, msg: Any) -> None:
        if isinstance(msg, EventPosted):
            self.store.add_event(msg.event)
        elif isinstance(msg, SessionPosted):
            self.store.record_session(msg.record, msg.steps)
        elif isinstance(msg, Want):
            if self.stop is not None:
                self.pool.give(msg.slot, None)
            else:
                self.waiting.append(msg.slot)
        elif isinstance(msg, Proposed):
            self._on_proposed(msg)
        elif isinstance(msg, Evaluated):
            self._on_evaluated(msg)
        elif isinstance(msg, RematchDone):
            self.champion.finish(msg.future)
        elif isinstance(msg, Fatal):
            self.busy.discard(msg.slot)
            self.dead.add(msg.slot)
            self.run.event("operator_error", f"proposer {msg.slot} failed: {msg.message}"[:500],
                           None, {"traceback": msg.trace})
            if len(self.dead) >= self.n_proposers:
                self._set_stop(LoopOutcome("finished", f"every proposer failed ({msg.message})"))
        elif isinstance(msg, Exited):
            self.busy.discard(msg.slot)
        elif isinstance(msg, Activity):
            self.progress.activity(msg.line, msg.urgent)

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

    # --- intake: contexts out, children in -------------------------------------------

    def _may_propose(self) -> bool:
        if self.stop is not None or len(self.ready) >= self.n_proposers:
            return False
        b = self.budget
        planned = self.next_cid + len(self.ready) + len(self.busy)
        return b.max_candidates is None or planned < b.max_candidates

    def _hand_out(self) -> bool:
        """Give waiting proposers a context each; True if any."""
        handed = False
        while self.waiting and self._may_propose():
            slot = self.waiting.pop(0)
            self.busy.add(slot)
            self.pool.give(slot, self._context())
            handed = True
        return handed

    def _context(self) -> VariationContext:
        parent, second = select_parents(self.store.candidates("ok"), self.rng, self.policy)
        best = self.store.best()
        # a proposer thread gets its own rng and puts its own view of the run in `run`
        return VariationContext(
            parent=parent, parent_source=self.repo.source_at(parent.id), second=second,
            second_source=self.repo.source_at(second.id) if second else None, run=self.run,
            rng=random.Random(self.rng.getrandbits(63)), evaluate=self.evals.probe,
            brief={"best_id": best.id if best else None,
                   "best_score": best.score if best else None,
                   "candidates": self.store.next_candidate_id(), "gpu": self.gpu})

    def _on_proposed(self, p: Proposed) -> None:
        self.busy.discard(p.slot)
        child, error, trace = p.child, p.error, p.trace
        if p.fatal:
            self.run.event("operator_error", (error or "")[:500], p.parent_id,
                           {"traceback": trace, "fatal": True})
            if child is not None and self._invalid(child) is None \
                    and not self.store.has_source(sha256_text(child.source)):
                kept = self._commit(child)  # evaluated by the next resume (reconcile)
                self.run.event("warning", f"candidate #{kept.id} (verified in the session "
                               "before the failure) is committed; `evolve resume` evaluates it",
                               kept.id)
            fail = LoopOutcome("finished", error or "the operator failed for good", failed=True)
            if self.stop is not None and not self.stop.failed:
                self.stop = fail  # it outranks a budget that ran out while the session ran
            self._set_stop(fail)
            return
        if error is None and child is not None:
            error = self._invalid(child)
        if error is not None:
            self.errors += 1
            self.run.event("operator_error", error[:500], p.parent_id, {"traceback": trace})
            self.progress.note(f"operator error ({self.errors}/{MAX_CONSECUTIVE_OPERATOR_ERRORS}):"
                               f" {error}"[:300])
            if self.errors >= MAX_CONSECUTIVE_OPERATOR_ERRORS:
                self._set_stop(LoopOutcome("finished", f"the operator failed {self.errors} "
                                           "times in a row"))
            return
        self.errors = 0
        if child is None:
            self.nones += 1
            self.run.log(f"[no-proposal] parent #{p.parent_id}: {p.reason}")
            if self.nones >= MAX_CONSECUTIVE_NONE:
                self._set_stop(LoopOutcome("finished", f"the {self.operator.name} operator "
                                           f"produced nothing {self.nones} times in a row "
                                           f"({p.reason})"))
            return
        self.nones = 0
        sha = sha256_text(child.source)
        if sha in self.shas or self.store.has_source(sha):
            self.dups += 1
            self.run.event("duplicate", f"proposal from #{child.parent_id} repeats an evaluated "
                           "source", child.parent_id, {"source_sha256": sha,
                                                       "hypothesis": child.hypothesis})
            if self.dups >= MAX_CONSECUTIVE_DUPLICATES:
                self._set_stop(LoopOutcome("finished", f"{self.dups} duplicate proposals in a "
                                           "row: the search space looks exhausted"))
            return
        self.dups = 0
        if self.stop is not None:
            if child.session_id:  # paid for: committed at shutdown for the next resume
                self.ready.append(child)
            else:
                self.run.log(f"[dropped] proposal from #{child.parent_id} ({self.stop.reason})")
            return
        child.variation_seconds = child.variation_seconds or p.seconds
        self.ready.append(child)
        self.shas.add(sha)

    def _invalid(self, child: Candidate) -> str | None:
        for pid in (child.parent_id, child.parent2_id):
            if pid is not None and self.store.get_candidate(pid) is None:
                return f"ValueError: proposal names unknown parent #{pid}"
        if not isinstance(child.source, str) or not child.source.strip():
            return "ValueError: proposal has no source"
        return None

    # --- one candidate: commit, evaluate, record ----------------------------------------

    def add_seed(self) -> None:
        seed_file = Path(self.run.config.seed_file)
        seed = Candidate.proposed(None, seed_file.read_text(encoding="utf-8"),
                                  f"seed kernel {seed_file.name}",
                                  {"seed_file": str(seed_file)}, "seed").committed(0, 0)
        self.repo.commit(seed, [])
        self.run.log(f"[commit] #0 {seed.commit_sha[:10]} seed")
        self._submit(seed)
        self.drain()
        cand = self.store.get_candidate(0)
        self.run.event("seed", f"seed {seed_file.name}: {cand.status}", 0,
                       {"score": cand.score, "failure_class": cand.failure_class})

    def _commit(self, child: Candidate) -> Candidate:
        parent = self.store.get_candidate(child.parent_id)
        parents = [parent.commit_sha]
        if child.parent2_id is not None:
            parents.append(self.store.get_candidate(child.parent2_id).commit_sha)
        child.hypothesis = child.hypothesis or "(none given)"
        c = self.repo.commit(child.committed(self.next_cid, parent.depth + 1), parents)
        self.next_cid += 1
        self.run.log(f"[commit] #{c.id} {c.commit_sha[:10]} parents {parents}")
        return c

    def _dispatch(self) -> None:
        """Commit and submit ready children while a worker slot is free."""
        if self.stop is not None:
            return
        while self.ready and len(self.in_flight) < self.evals.executor.capacity:
            self._submit(self._commit(self.ready.pop(0)))

    def _submit(self, c: Candidate) -> None:
        fut = self.evals.submit_candidate(c, self.champion.prescreen())
        self.in_flight[c.id] = c
        fut.add_done_callback(lambda f, cid=c.id: self.inbox.put(Evaluated(cid, f)))
        self.progress.started(c.id, c.hypothesis.splitlines()[0][:100] if c.hypothesis else "")

    def _on_evaluated(self, msg: Evaluated) -> None:
        c = self.in_flight.pop(msg.cid)
        result = self.evals.candidate_result(c, msg.future.result())
        if result.failure is not None and result.failure.cls == "internal" \
                and c.id not in self.retried:
            self.retried.add(c.id)
            self.run.event("warning", f"internal evaluator error on #{c.id}, evaluating again: "
                           f"{result.failure.message}"[:500], c.id)
            self._submit(c)
            return
        self._record(c.with_result(result))

    def _record(self, cand: Candidate) -> None:
        self.store.add_candidate(cand)
        self.shas.discard(cand.source_sha256)
        self.run.log(f"[recorded] #{cand.id} {cand.status} score={cand.score} "
                     f"failure={cand.failure_class}")
        self.champion.consider(cand)
        self._refresh_progress()
        first = cand.hypothesis.splitlines()[0] if cand.hypothesis else ""
        if cand.ok:
            score = "no score (no baseline time)" if cand.score is None else f"score {cand.score:.4g}"
            self.progress.finished(f"#{cand.id} ok {score} ({first[:60]})", cid=cand.id)
        else:
            fail = f"#{cand.id} {cand.failure_class}: {(cand.failure_message or '')[:160]}"
            self.progress.finished(f"#{cand.id} rejected ({cand.failure_class})", fail,
                                   cid=cand.id)

    def _refresh_progress(self) -> None:
        s = self.progress.state
        s.done = self.store.next_candidate_id()
        best = self.store.best()
        s.best_id, s.best_score = (best.id, best.score) if best else (None, None)
        s.cost_usd = self.store.totals()["cost_usd"]

    # --- workers and shutdown ----------------------------------------------------

    def _snapshot_workers(self, force: bool = False) -> None:
        ex = self.evals.current
        now = time.monotonic()
        if ex is None or (not force and now - self._snap_t < WORKERS_SNAPSHOT_S):
            return
        self._snap_t = now
        try:
            workers = ex.workers()
            self.store.upsert_workers([w.to_dict() for w in workers])
            self.progress.workers(workers)
        except Exception as e:  # utilisation is informative: never stop the run for it
            self.run.log(f"[warning] workers snapshot failed: {type(e).__name__}: {e}")

    def _shutdown(self, abandon: bool) -> None:
        """Stop the proposers, apply their last writes, stop the executor."""
        if self.pool is not None:
            self.pool.stop()
            self.pool.join(2.0 if abandon else 30.0)
        late = list(self.ready)  # children never committed
        self.ready.clear()
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(msg, (EventPosted, SessionPosted)):
                try:
                    self._handle(msg)
                except Exception as e:
                    self.run.log(f"[warning] a proposer's write failed: {e}")
            elif isinstance(msg, Proposed) and msg.child is not None:
                late.append(msg.child)
        self._keep_paid(late)
        self.evals.shutdown(wait=not abandon)
        self._snapshot_workers(force=True)

    def _keep_paid(self, children: list[Candidate]) -> None:
        """Commit the agent's children (paid for: they have a session) that the stop left
        unevaluated; the next resume evaluates them (reconcile). Others are dropped."""
        seen = {c.source_sha256 for c in self.in_flight.values()}
        for child in children:
            if not child.session_id or self._invalid(child) is not None:
                continue
            sha = sha256_text(child.source)
            if sha in seen or self.store.has_source(sha):
                continue
            seen.add(sha)
            try:
                kept = self._commit(child)
            except Exception as e:  # the stop goes on; the session's record stays
                self.run.log(f"[warning] could not keep #{child.parent_id}'s child: {e}")
                continue
            self.run.event("warning", f"candidate #{kept.id} (an agent session's work that "
                           "arrived as the run stopped) is committed; `evolve resume` "
                           "evaluates it", kept.id)

    # --- crash recovery --------------------------------------------------------

    def reconcile(self) -> None:
        """Record orphan refs (re-evaluating them), restore missing refs, fix the best ref."""
        refs = self.repo.candidate_refs()
        recorded = self.store.candidate_ids()
        for cid in sorted(set(refs) - recorded):
            c = self.repo.candidate_at(cid)
            self.run.event("orphan_recovered", f"candidate #{cid} had a commit but no record: "
                           "evaluating it again", cid, {"commit": c.commit_sha})
            self.progress.note(f"recovering #{cid} (its evaluation was cut short)")
            self._submit(c)
            self.drain()
            if cid == 0:
                cand = self.store.get_candidate(0)
                self.run.event("seed", f"seed: {cand.status}", 0,
                               {"score": cand.score, "failure_class": cand.failure_class})
        for cid in sorted(recorded - set(refs)):
            cand = self.store.get_candidate(cid)
            self.repo.restore_ref(cid, cand.commit_sha)
            self.run.event("warning", f"restored missing ref of #{cid}", cid)
        best = self.store.best()
        if best is not None and self.repo.best_sha() != best.commit_sha:
            self.repo.set_best(best.id)
