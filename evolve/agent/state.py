"""The mutable state of one agent session: the working copy and what happened to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evolve.agent.budget import SessionBudget


@dataclass
class EvalNote:
    """One evaluation the agent ran (kept for the proposal's changes and the critique)."""

    status: str
    failure_class: str | None
    score: float | None
    source_sha: str


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
    evals: list[EvalNote] = field(default_factory=list)
    knowledge_read: list[str] = field(default_factory=list)

    @property
    def run(self) -> Any:
        return self.ctx.run

    @property
    def parent_source(self) -> str:
        return self.ctx.parent_source
