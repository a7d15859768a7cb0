"""Records kept in a run's lineage.db (one dataclass per table; see docs/architecture.md),
and the one `Candidate` that goes from an operator's proposal to its row.

A candidate is born in an operator (`parent_id`, `source`, `hypothesis`, `changes`, and
what the variation cost), gets its `id`, `depth` and `commit_sha` when the orchestrator
commits it, and its evaluation (`with_result(EvalResult)`) before it is recorded. Its
per-shape numbers live once, in `result_json` (`EvalResult.to_dict()`; `evaluation`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from evaluator import EvalResult


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def sha256_text(text: str) -> str:
    """SHA-256 hex digest of a text (UTF-8): candidate sources, index keys."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Row:
    """Base of the records: to/from a flat sqlite row; `*_json` columns hold JSON text."""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_row(cls, row: dict[str, Any]):  # type: ignore[no-untyped-def]
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in row.items() if k in names})


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


@dataclass
class Candidate(_Row):
    parent_id: int | None
    source: str = field(default="", repr=False)  # the kernel text (git keeps it, not the DB)
    hypothesis: str = ""
    changes_json: str = "{}"
    operator: str = ""  # "seed" | "offline" | "agent" | ...
    parent2_id: int | None = None
    session_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    variation_seconds: float = 0.0
    # what kind of variation made it ("knob:BLOCK_N", "recipe:<name>", "crossover:class",
    # ...; operators/payoff.py learns from it); "" for seeds, agents and older runs
    variation_kind: str = ""
    # set when committed
    id: int = -1
    depth: int = 0
    commit_sha: str = ""
    source_sha256: str = ""
    # set when evaluated
    status: str = "pending"  # "pending" | "ok" | "rejected"
    score: float | None = None
    failure_class: str | None = None
    failure_message: str | None = None
    suite: str = ""
    device: str = ""
    eval_seconds: float = 0.0
    result_json: str = "{}"
    created_at: str = field(default_factory=utc_now, compare=False)

    @classmethod
    def proposed(cls, parent_id: int, source: str, hypothesis: str, changes: dict[str, Any],
                 operator: str, **kw: Any) -> "Candidate":
        """What an operator returns: a child, not yet numbered, committed or evaluated."""
        return cls(parent_id=parent_id, source=source, hypothesis=hypothesis, operator=operator,
                   changes_json=json.dumps(changes, sort_keys=True, default=str), **kw)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        del row["source"]
        return row

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def changes(self) -> dict[str, Any]:
        return json.loads(self.changes_json or "{}")

    @property
    def unsubmitted(self) -> str | None:
        """Why an agent session that never called submit handed in this candidate (its best
        state that evaluated ok: `changes["agent"]["unsubmitted"]`), None for a submitted one."""
        agent = self.changes.get("agent")
        return agent.get("unsubmitted") if isinstance(agent, dict) else None

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.result_json or "{}")

    @property
    def evaluation(self) -> EvalResult | None:
        """The recorded evaluation (per-shape numbers in `.shapes`); None before one."""
        d = self.result
        return EvalResult.from_dict(d) if d.get("status") in ("ok", "rejected") else None

    def committed(self, cid: int, depth: int, commit_sha: str = "") -> "Candidate":
        return replace(self, id=cid, depth=depth, commit_sha=commit_sha,
                       source_sha256=sha256_text(self.source))

    def with_result(self, res: EvalResult) -> "Candidate":
        f = res.failure
        return replace(self, status=res.status, score=_finite(res.score) if res.ok else None,
                       failure_class=f.cls if f else None, failure_message=f.message if f else None,
                       suite=res.suite, device=res.device, eval_seconds=float(res.wall_s or 0.0),
                       result_json=json.dumps(res.to_dict(), default=lambda o: None),
                       created_at=utc_now())


@dataclass
class SessionRecord(_Row):
    id: str
    parent_id: int
    parent2_id: int | None
    operator: str
    model: str
    outcome: str  # "submitted" | "gave_up" | "budget" | "error" | "no_tools" | "open" (so far)
    candidate_id: int | None = None
    reason: str = ""
    tool_calls: int = 0
    evaluations: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    started_at: str = field(default_factory=utc_now)
    ended_at: str = field(default_factory=utc_now)


@dataclass
class AgentStep(_Row):
    session_id: str
    step: int
    role: str  # "assistant" | "tool" | "user"
    tool: str | None
    arguments_json: str
    result_summary: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    created_at: str = field(default_factory=utc_now)


@dataclass
class Event(_Row):
    kind: str
    message: str = ""
    candidate_id: int | None = None
    data_json: str = "{}"
    ts: str = field(default_factory=utc_now)


@dataclass
class RunRecord(_Row):
    name: str
    target: str
    operator: str
    model: str
    suite: str
    status: str  # "running" | "stopped" | "interrupted" | "finished"
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    config_json: str = "{}"
    fingerprint_json: str = "{}"
