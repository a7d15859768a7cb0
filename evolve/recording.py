"""From a proposal to a recorded candidate: pending children, commit messages, DB rows.

A `Pending` child is everything known before its evaluation. It is written into the
commit message (hypothesis + trailers) so that `evolve resume` can rebuild it from
git alone when the process died between the commit and the DB row.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from evolve.gitrepo import KernelRepo, commit_message
from evolve.records import Candidate, Measurement


def sha256_text(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


@dataclass
class Pending:
    cid: int
    source: str
    hypothesis: str
    operator: str
    parent_id: int | None = None
    parent2_id: int | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    variation_seconds: float = 0.0
    depth: int = 0
    commit_sha: str = ""

    @property
    def source_sha256(self) -> str:
        return sha256_text(self.source)

    def trailers(self) -> dict[str, Any]:
        return {
            "Candidate-Id": self.cid,
            "Operator": self.operator,
            "Parent-Id": self.parent_id,
            "Parent2-Id": self.parent2_id,
            "Depth": self.depth,
            "Session-Id": self.session_id,
            "Tokens-In": self.tokens_in or None,
            "Tokens-Out": self.tokens_out or None,
            "Cost-Usd": repr(self.cost_usd) if self.cost_usd else None,
            "Variation-Seconds": f"{self.variation_seconds:.3f}",
            "Changes": json.dumps(self.changes, sort_keys=True, default=str),
        }

    def message(self) -> str:
        return commit_message(self.cid, self.hypothesis, self.trailers())


def _opt_int(v: str | None) -> int | None:
    return int(v) if v not in (None, "", "None") else None


def pending_from_commit(repo: KernelRepo, cid: int) -> Pending:
    """Rebuild the Pending child of an orphan ref (a commit without a DB row)."""
    t = repo.trailers_of(cid)
    msg = repo.message_of(cid).splitlines()
    first = msg[0].split(": ", 1)[1] if msg and ": " in msg[0] else ""
    body: list[str] = []
    for line in msg[2:]:
        if line.split(": ", 1)[0] in t:
            break
        body.append(line)
    hypothesis = "\n".join(body).strip() or first
    try:
        changes = json.loads(t.get("Changes", "{}"))
    except ValueError:
        changes = {}
    return Pending(
        cid=cid, source=repo.source_at(cid), hypothesis=hypothesis,
        operator=t.get("Operator", "unknown"), parent_id=_opt_int(t.get("Parent-Id")),
        parent2_id=_opt_int(t.get("Parent2-Id")), changes=changes,
        session_id=t.get("Session-Id") or None, tokens_in=int(t.get("Tokens-In", 0)),
        tokens_out=int(t.get("Tokens-Out", 0)), cost_usd=float(t.get("Cost-Usd", 0.0)),
        variation_seconds=float(t.get("Variation-Seconds", 0.0)),
        depth=int(t.get("Depth", 0)), commit_sha=repo.repo.commit(
            repo.candidate_refs()[cid]).hexsha)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def to_records(p: Pending, result: Any) -> tuple[Candidate, list[Measurement]]:
    """The candidate row and measurement rows of an evaluated pending child."""
    d = result.to_dict()
    failure = d.get("failure") or {}
    cand = Candidate(
        id=p.cid, parent_id=p.parent_id, parent2_id=p.parent2_id, operator=p.operator,
        commit_sha=p.commit_sha, source_sha256=p.source_sha256, status=d["status"],
        score=_finite(d.get("score")) if d["status"] == "ok" else None,
        failure_class=failure.get("class"), failure_message=failure.get("message"),
        hypothesis=p.hypothesis, changes_json=json.dumps(p.changes, sort_keys=True, default=str),
        suite=str(d.get("suite", "")), device=str(d.get("device", "")),
        eval_seconds=float(d.get("wall_s") or 0.0), variation_seconds=p.variation_seconds,
        tokens_in=p.tokens_in, tokens_out=p.tokens_out, cost_usd=p.cost_usd,
        session_id=p.session_id, depth=p.depth,
        result_json=json.dumps(d, default=lambda o: None))
    rows = []
    for s in d.get("shapes", []):
        rows.append(Measurement(
            candidate_id=p.cid, shape=str(s.get("name", "")), B=int(s.get("B", 0)),
            Hq=int(s.get("Hq", 0)), Hkv=int(s.get("Hkv", 0)), S=int(s.get("S", 0)),
            D=int(s.get("D", 0)), causal=bool(s.get("causal", False)),
            dtype=str(s.get("dtype", "")), ms=_finite(s.get("ms")), tflops=_finite(s.get("tflops")),
            baseline_ms=_finite(s.get("baseline_ms")), speedup=_finite(s.get("speedup")),
            error=_finite(s.get("error")), error_ratio=_finite(s.get("error_ratio")),
            baselines_json=json.dumps(s.get("baselines") or {}, sort_keys=True)))
    return cand, rows
