"""Proposal intake of the loop: handing contexts to proposers, and what comes back.

A proposer gets a context (parent selection, sources read by the orchestrator) only
while the candidate budget has room for it (recorded + committed + ready + proposals in
flight < max_candidates) and fewer than `proposers` deduplicated proposals wait for a
free worker. What comes back is counted (operator errors, empty proposals, duplicates of
recorded or in-flight sources; 5 / 5 / 20 in a row finish the run) or queued as ready.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from evolve.operators.base import Proposal, VariationContext
from evolve.proposers import Outcome, Work
from evolve.recording import sha256_text
from evolve.selection import select_parents

MAX_CONSECUTIVE_NONE = 5
MAX_CONSECUTIVE_DUPLICATES = 20
MAX_CONSECUTIVE_OPERATOR_ERRORS = 5


@dataclass
class LoopOutcome:
    status: str  # "stopped" (budget) | "finished" (nothing more to do)
    reason: str
    failed: bool = False  # the run could not proceed at all (the seed was rejected)


class IntakeMixin:
    """Mixed into EvolutionLoop (uses self.store, self.repo, self.pool, self.ready, ...)."""

    def _may_propose(self) -> bool:
        if self.stop is not None or len(self.ready) >= self.n_proposers:
            return False
        b = self.budget
        planned = self.next_cid + len(self.ready) + len(self.busy)
        return b.max_candidates is None or planned < b.max_candidates

    def _hand_out(self) -> bool:
        """Give waiting proposers a context each (inline: propose once); True if any."""
        handed = False
        while self.waiting and self._may_propose():
            slot = self.waiting.pop(0)
            work = self._make_work()
            handed = True
            if self.pool is not None:
                self.busy.add(slot)
                self.pool.give(slot, work)
                continue
            self._on_outcome(self._propose_inline(work))
            self.waiting.append(slot)
            break
        return handed

    def _make_work(self) -> Work:
        parent, second = select_parents(self.store.candidates("ok"), self.rng, self.policy)
        return Work(parent=parent, parent_source=self.repo.source_at(parent.id), second=second,
                    second_source=self.repo.source_at(second.id) if second else None,
                    rng_seed=self.rng.getrandbits(63) if self.pool else 0, brief=self.brief())

    def _propose_inline(self, work: Work) -> Outcome:
        ctx = VariationContext(parent=work.parent, parent_source=work.parent_source,
                               second=work.second, second_source=work.second_source,
                               run=self.run, rng=self.rng, evaluate=self.evals.probe,
                               brief=work.brief)
        t0 = time.monotonic()
        try:
            prop = self.operator.propose(ctx)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # an operator bug must not end the run
            return Outcome(0, work.parent.id, None, f"{type(e).__name__}: {e}"[:500],
                           traceback.format_exc()[-4000:])
        why = "" if prop is not None else getattr(self.operator, "last_reason", "")
        return Outcome(0, work.parent.id, prop, reason=why or "no proposal",
                       seconds=time.monotonic() - t0)

    def _on_outcome(self, o: Outcome) -> None:
        self.busy.discard(o.slot)
        prop = o.proposal
        error, trace = o.error, o.trace
        if error is None and prop is not None:
            try:
                self._check_parents(prop)
            except ValueError as e:
                error, trace = f"{type(e).__name__}: {e}", traceback.format_exc()[-4000:]
        if error is not None:
            self.errors += 1
            self.event("operator_error", error[:500], o.parent_id, {"traceback": trace})
            self.progress.note(f"operator error ({self.errors}/{MAX_CONSECUTIVE_OPERATOR_ERRORS}):"
                               f" {error}"[:300])
            if self.errors >= MAX_CONSECUTIVE_OPERATOR_ERRORS:
                self._set_stop(LoopOutcome("finished", f"the operator failed {self.errors} "
                                           "times in a row"))
            return
        self.errors = 0
        if prop is None:
            self.nones += 1
            self.log(f"[no-proposal] parent #{o.parent_id}: {o.reason}")
            if self.nones >= MAX_CONSECUTIVE_NONE:
                self._set_stop(LoopOutcome("finished", f"the {self.operator.name} operator "
                                           f"produced nothing {self.nones} times in a row "
                                           f"({o.reason})"))
            return
        self.nones = 0
        sha = sha256_text(prop.source)
        if sha in self.shas or self.store.has_source(sha):
            self.dups += 1
            self.event("duplicate", f"proposal from #{prop.parent_id} repeats an evaluated "
                       "source", prop.parent_id, {"source_sha256": sha,
                                                  "hypothesis": prop.hypothesis})
            if self.dups >= MAX_CONSECUTIVE_DUPLICATES:
                self._set_stop(LoopOutcome("finished", f"{self.dups} duplicate proposals in a "
                                           "row: the search space looks exhausted"))
            return
        self.dups = 0
        if self.stop is not None:
            self.log(f"[dropped] proposal from #{prop.parent_id} ({self.stop.reason})")
            return
        self.ready.append(prop)
        self.shas.add(sha)

    def _check_parents(self, prop: Proposal) -> None:
        for pid in (prop.parent_id, prop.parent2_id):
            if pid is not None and self.store.get_candidate(pid) is None:
                raise ValueError(f"proposal names unknown parent #{pid}")
        if not isinstance(prop.source, str) or not prop.source.strip():
            raise ValueError("proposal has no source")
