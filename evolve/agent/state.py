"""The mutable state of one agent session: the working copy and what happened to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evaluator import EvalResult
from evolve.agent.budget import SessionBudget


@dataclass
class SessionState:
    ctx: Any  # evolve.operators.base.VariationContext
    source: str  # the working copy
    budget: SessionBudget
    suite: str  # the suite `evaluate` runs by default
    gpu: bool = False
    ended: bool = False
    outcome: str | None = None  # "submitted" | "gave_up" once a tool ended the session
    hypothesis: str = ""
    reason: str = ""
    edits: int = 0
    evals: list[EvalResult] = field(default_factory=list)  # the agent's evaluations
    evaluated_sha: str = ""  # sha256 of the source the last of them evaluated
    knowledge_read: list[str] = field(default_factory=list)

    @property
    def run(self) -> Any:
        return self.ctx.run

    @property
    def parent_source(self) -> str:
        return self.ctx.parent_source
