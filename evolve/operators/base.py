"""The variation-operator protocol and what flows in and out of it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from evolve.records import Candidate

if TYPE_CHECKING:  # pragma: no cover
    from evaluator import EvalResult
    from evolve.run import RunHandle


class OperatorError(Exception):
    """An operator could not produce a proposal because of a bug or bad input."""


@dataclass
class VariationContext:
    parent: Candidate
    parent_source: str
    second: Candidate | None
    second_source: str | None
    run: "RunHandle"
    rng: random.Random
    evaluate: Callable[[str, str], "EvalResult"]  # (source text, suite) -> real evaluation
    brief: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proposal:
    source: str
    hypothesis: str
    changes: dict[str, Any]
    parent_id: int
    parent2_id: int | None = None
    operator: str = "offline"
    session_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    variation_seconds: float = 0.0


class Operator(Protocol):
    name: str

    def propose(self, ctx: VariationContext) -> Proposal | None: ...
