"""Records kept in a run's lineage.db (one dataclass per table; see docs/architecture.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class _Row:
    """Mixin: to/from a flat sqlite row; `*_json` columns hold JSON text."""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_row(cls, row: dict[str, Any]):  # type: ignore[no-untyped-def]
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass
class Candidate(_Row):
    id: int
    parent_id: int | None
    parent2_id: int | None
    operator: str  # "seed" | "offline" | "agent"
    commit_sha: str
    source_sha256: str
    status: str  # "ok" | "rejected"
    score: float | None
    failure_class: str | None
    failure_message: str | None
    hypothesis: str
    changes_json: str = "{}"
    suite: str = ""
    device: str = ""
    eval_seconds: float = 0.0
    variation_seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    session_id: str | None = None
    depth: int = 0
    created_at: str = field(default_factory=utc_now)
    result_json: str = "{}"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def changes(self) -> dict[str, Any]:
        return json.loads(self.changes_json or "{}")

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.result_json or "{}")


@dataclass
class Measurement(_Row):
    candidate_id: int
    shape: str
    B: int
    Hq: int
    Hkv: int
    S: int
    D: int
    causal: bool
    dtype: str
    ms: float | None
    tflops: float | None
    baseline_ms: float | None
    speedup: float | None
    error: float | None
    error_ratio: float | None
    baselines_json: str = "{}"


@dataclass
class SessionRecord(_Row):
    id: str
    parent_id: int
    parent2_id: int | None
    operator: str
    model: str
    outcome: str  # "submitted" | "gave_up" | "budget" | "error" | "no_tools"
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


def sha256_text(text: str) -> str:
    """SHA-256 hex digest of a text (UTF-8): candidate sources, index keys."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
