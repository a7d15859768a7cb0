"""The variation-operator protocol and what flows in and out of it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from evolve.records import AgentStep, Candidate, Event, SessionRecord

if TYPE_CHECKING:  # pragma: no cover
    from evaluator import EvalResult
    from evolve.proposers import RunView
    from evolve.run import RunHandle


class Writer(Protocol):
    """What an operator may write to the run (`ctx.run.writer`): events and agent sessions.
    The orchestrator's own store is one; a proposer thread's `PostingWriter` is another."""

    def add_event(self, e: Event) -> None: ...

    def record_session(self, s: SessionRecord, steps: list[AgentStep]) -> None: ...


class OperatorError(Exception):
    """An operator could not produce a proposal because of a bug or bad input."""


class RunFatal(Exception):
    """The operator can never succeed as configured (e.g. the model endpoint refuses every
    request): the loop stops the run at once and it exits 1 with this message. `kept`: a
    child verified before the failure; the loop commits it (not evaluated) and the next
    `evolve resume` evaluates it (reconcile), so that work is not lost."""

    kept: Candidate | None = None


@dataclass
class VariationContext:
    parent: Candidate
    parent_source: str
    second: Candidate | None
    second_source: str | None
    run: "RunHandle | RunView"  # a proposer thread's view of the run (evolve.proposers)
    rng: random.Random
    evaluate: Callable[..., "EvalResult"]  # (source text, suite[, profile=]) -> real evaluation
    brief: dict[str, Any] = field(default_factory=dict)


class Operator(Protocol):
    """`propose` returns a child (`Candidate.proposed(...)`), or None with `last_reason`
    saying why; an exception is an operator error (the loop counts them)."""
    name: str
    last_reason: str

    def propose(self, ctx: VariationContext) -> Candidate | None: ...
