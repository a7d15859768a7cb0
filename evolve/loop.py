"""The evolution loop: seed, then select -> vary -> dedup -> evaluate -> record.

Write order for one candidate (crash safety): (1) git commit + refs/candidates/<id>,
(2) evaluate, (3) one SQLite transaction with the candidate and its measurements,
(4) move refs/heads/best. `reconcile()` (run first on every start/resume) records any
candidate ref without a DB row by evaluating it again, so nothing is lost or doubled.
"""

from __future__ import annotations

import json
import random
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.evaluation import Evaluations
from evolve.operators.base import Operator, Proposal, VariationContext
from evolve.progress import PlainProgress
from evolve.records import Candidate, Event, utc_now
from evolve.recording import Pending, pending_from_commit, sha256_text, to_records
from evolve.run import RunHandle
from evolve.selection import SelectionPolicy, select_parents

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
    failed: bool = False  # the run could not proceed at all (the seed was rejected)


class EvolutionLoop:
    def __init__(self, run: RunHandle, operator: Operator, progress: PlainProgress,
                 budget: Budget, evaluations: Evaluations | None = None,
                 gpu: bool | None = None):
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
        self.reconcile()
        if self.store.get_candidate(0) is None:
            self.add_seed()
        self._refresh_progress()
        nones = dups = errors = 0
        while True:
            reason = self.budget_reached()
            if reason:
                return LoopOutcome("stopped", reason)
            ok = self.store.candidates("ok")
            if not ok:
                seed = self.store.get_candidate(0)
                why = f"{seed.failure_class}: {seed.failure_message}" if seed else "no seed"
                return LoopOutcome("finished", f"no correct candidate to vary (seed rejected: "
                                   f"{why})", failed=True)
            parent, second = select_parents(ok, self.rng, self.policy)
            ctx = VariationContext(
                parent=parent, parent_source=self.repo.source_at(parent.id), second=second,
                second_source=self.repo.source_at(second.id) if second else None, run=self.run,
                rng=self.rng, evaluate=self.evals.probe, brief=self.brief())
            try:
                prop = self.operator.propose(ctx)
                if prop is not None:
                    self._check_parents(prop)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # an operator bug must not end the run
                errors += 1
                self.event("operator_error", f"{type(e).__name__}: {e}"[:500], parent.id,
                           {"traceback": traceback.format_exc()[-4000:]})
                self.progress.note(f"operator error ({errors}/{MAX_CONSECUTIVE_OPERATOR_ERRORS}): "
                                   f"{type(e).__name__}: {e}"[:300])
                if errors >= MAX_CONSECUTIVE_OPERATOR_ERRORS:
                    return LoopOutcome("finished", f"the operator failed {errors} times in a row")
                continue
            errors = 0
            if prop is None:
                nones += 1
                why = getattr(self.operator, "last_reason", "") or "no proposal"
                self.log(f"[no-proposal] parent #{parent.id}: {why}")
                if nones >= MAX_CONSECUTIVE_NONE:
                    return LoopOutcome("finished", f"the {self.operator.name} operator produced "
                                       f"nothing {nones} times in a row ({why})")
                continue
            nones = 0
            sha = sha256_text(prop.source)
            if self.store.has_source(sha):
                dups += 1
                self.event("duplicate", f"proposal from #{prop.parent_id} repeats an evaluated "
                           "source", prop.parent_id, {"source_sha256": sha,
                                                      "hypothesis": prop.hypothesis})
                if dups >= MAX_CONSECUTIVE_DUPLICATES:
                    return LoopOutcome("finished", f"{dups} duplicate proposals in a row: the "
                                       "search space looks exhausted")
                continue
            dups = 0
            self.add_proposal(prop)

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

    def _check_parents(self, prop: Proposal) -> None:
        for pid in (prop.parent_id, prop.parent2_id):
            if pid is not None and self.store.get_candidate(pid) is None:
                raise ValueError(f"proposal names unknown parent #{pid}")
        if not isinstance(prop.source, str) or not prop.source.strip():
            raise ValueError("proposal has no source")

    def add_proposal(self, prop: Proposal) -> Candidate:
        self._check_parents(prop)
        parent = self.store.get_candidate(prop.parent_id)
        parents = [parent.commit_sha]
        if prop.parent2_id is not None:
            parents.append(self.store.get_candidate(prop.parent2_id).commit_sha)
        cid = max([self.store.next_candidate_id()] + [c + 1 for c in self.repo.candidate_refs()])
        p = Pending(cid=cid, source=prop.source, hypothesis=prop.hypothesis or "(none given)",
                    operator=prop.operator or self.operator.name, parent_id=prop.parent_id,
                    parent2_id=prop.parent2_id, changes=prop.changes or {},
                    session_id=prop.session_id, tokens_in=prop.tokens_in,
                    tokens_out=prop.tokens_out, cost_usd=prop.cost_usd,
                    variation_seconds=prop.variation_seconds, depth=parent.depth + 1)
        p.commit_sha = self.repo.commit_candidate(cid, p.source, parents, p.message())
        self.log(f"[commit] #{cid} {p.commit_sha[:10]} parents {parents}")
        return self.evaluate_and_record(p)

    def evaluate_and_record(self, p: Pending) -> Candidate:
        first = p.hypothesis.splitlines()[0] if p.hypothesis else ""
        self.progress.started(p.cid, first[:100])
        result = self.evals.candidate(p.cid, p.source)
        if not result.ok and result.failure is not None and result.failure.cls == "internal":
            # an evaluator fault is never the candidate's: give it one more try
            self.event("warning", f"internal evaluator error on #{p.cid}, evaluating again: "
                       f"{result.failure.message}"[:500], p.cid)
            result = self.evals.candidate(p.cid, p.source)
        cand, rows = to_records(p, result)
        self.store.add_candidate(cand, rows)
        self.log(f"[recorded] #{cand.id} {cand.status} score={cand.score} "
                 f"failure={cand.failure_class}")
        self.update_champion(cand)
        self._refresh_progress()
        if cand.ok:
            line = f"#{cand.id} ok score {cand.score:.4g} ({first[:60]})"
            self.progress.finished(line)
        else:
            fail = f"#{cand.id} {cand.failure_class}: {(cand.failure_message or '')[:160]}"
            self.progress.finished(f"#{cand.id} rejected ({cand.failure_class})", fail)
        return cand

    def update_champion(self, cand: Candidate) -> None:
        if not cand.ok or cand.score is None:
            return
        champ = self.store.best()  # falls back to the seed itself before any new_best event
        if champ is None or champ.id == cand.id:
            self.declare_best(cand, "first correct candidate")
            return
        if champ.score is not None and cand.score <= champ.score:
            return
        if not self.gpu:
            self.declare_best(cand, f"score {cand.score:.4g} > {champ.score:.4g} (#{champ.id}); "
                              "interpreter timing, no rematch")
            return
        try:
            outcome = self.evals.rematch(cand.id, champ.id)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            self.event("warning", f"rematch #{cand.id} vs #{champ.id} failed: {e}"[:500], cand.id)
            return
        verdict = "wins" if outcome.better else "does not beat the champion within noise"
        self.event("rematch", f"#{cand.id} vs #{champ.id}: {verdict}", cand.id, outcome.data)
        if outcome.better:
            self.declare_best(cand, f"won the rematch against #{champ.id} "
                              f"(ratio {outcome.data.get('ratio')})")

    def declare_best(self, cand: Candidate, why: str) -> None:
        self.event("new_best", why, cand.id, {"score": cand.score})
        self.repo.set_best(cand.id)

    def _refresh_progress(self) -> None:
        s = self.progress.state
        s.done = self.store.next_candidate_id()
        best = self.store.best()
        s.best_id, s.best_score = (best.id, best.score) if best else (None, None)
        s.cost_usd = self.store.totals()["cost_usd"]

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
