"""Lessons learned by runs: one searchable record per evaluated candidate.

A lesson is read from the `candidates` table of a run's `lineage.db` (schema in
docs/architecture.md). The database is opened read-only: the orchestrator is its only
writer, so lessons are never stored there; `evolve.knowledge` indexes them in an
in-memory FTS table at query time.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from evolve.knowledge_docs import KnowledgeError

LINEAGE_DB = "lineage.db"


@dataclass
class Lesson:
    run: str
    candidate_id: int
    parent_id: int | None
    operator: str
    status: str
    score: float | None
    failure_class: str | None
    hypothesis: str
    outcome: str
    changes: str

    @property
    def id(self) -> str:
        return f"{self.run}#{self.candidate_id}"

    @property
    def title(self) -> str:
        first = (self.hypothesis.strip().splitlines() or [""])[0]
        return f"candidate {self.candidate_id} ({self.operator}): {first}"[:160]

    @property
    def tags(self) -> str:
        parts = [self.operator, self.status]
        if self.failure_class:
            parts.append(self.failure_class)
        return " ".join(parts)

    @property
    def body(self) -> str:
        text = f"{self.hypothesis.strip()}\nOutcome: {self.outcome}"
        if self.changes:
            text += f"\nChanges: {self.changes}"
        return text


def outcome_text(status: str, score: float | None, parent_score: float | None,
                 failure_class: str | None, failure_message: str | None,
                 parent_id: int | None, device: str = "", suite: str = "") -> str:
    """'ok, score 0.910 (+4.6% vs parent 0.870, gain)' or 'rejected: mismatch: ...'.

    Scores measured in the CPU interpreter are wall-clock times of Python code, so the
    outcome says so: an agent must not read them as GPU evidence."""
    if status != "ok":
        msg = " ".join((failure_message or "").split())
        if len(msg) > 300:
            msg = msg[:297] + "..."
        return f"rejected: {failure_class or 'unknown'}: {msg}".rstrip(": ")
    if score is None:
        return "ok, no score"
    text = f"ok, score {score:.3f}"
    if parent_id is None:
        text += " (seed)"
    elif parent_score:
        change = (score / parent_score - 1.0) * 100.0
        word = "gain" if change > 0 else "loss" if change < 0 else "no change"
        text += f" ({change:+.1f}% vs parent {parent_score:.3f}, {word})"
    else:
        text += " (parent has no score)"
    where = ", ".join(x for x in (f"{suite} suite" if suite else "",
                                  "CPU interpreter timing, not GPU performance"
                                  if device and device != "cuda" else device) if x)
    return text + (f" [{where}]" if where else "")


def changes_text(changes_json: str | None) -> str:
    """Flatten `{"knobs": {...}, "recipes": [...]}` (or anything JSON) to one line."""
    if not changes_json:
        return ""
    try:
        data = json.loads(changes_json)
    except ValueError:
        return " ".join(changes_json.split())[:300]
    if not data:
        return ""
    parts: list[str] = []
    if isinstance(data, dict):
        knobs = data.get("knobs")
        if isinstance(knobs, dict) and knobs:
            parts.append("knobs " + ", ".join(_knob(k, v) for k, v in knobs.items()))
        recipes = data.get("recipes")
        if isinstance(recipes, list) and recipes:
            parts.append("recipes " + ", ".join(str(r) for r in recipes))
        rest = {k: v for k, v in data.items()
                if k not in ("knobs", "recipes") and v not in (None, "", [], {})}
        if rest:
            parts.append(json.dumps(rest, sort_keys=True))
    else:
        parts.append(json.dumps(data))
    return "; ".join(parts)[:600]


def _knob(name: str, value: object) -> str:
    if isinstance(value, dict) and set(value) >= {"from", "to"}:
        return f"{name} {value['from']} -> {value['to']}"
    return f"{name}={value}"


def readonly_uri(db_path: Path) -> str:
    """SQLite URI opening db_path read-only (path percent-quoted: '#', '?' are safe)."""
    return f"file:{quote(str(Path(db_path).resolve()))}?mode=ro"


def _open_readonly(db_path: Path) -> sqlite_utils.Database:
    try:
        conn = sqlite3.connect(readonly_uri(db_path), uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise KnowledgeError(f"cannot open {db_path}: {exc}") from exc
    return sqlite_utils.Database(conn)


def run_lessons(run_dir: Path) -> list[Lesson]:
    """All lessons of one run directory (one per candidates row)."""
    db_path = Path(run_dir) / LINEAGE_DB
    if not db_path.is_file():
        raise KnowledgeError(f"no {LINEAGE_DB} in run directory {run_dir}")
    db = _open_readonly(db_path)
    try:
        if "candidates" not in db.table_names():
            return []
        rows = list(db.query("select * from candidates order by id"))
    except sqlite3.Error as exc:
        raise KnowledgeError(f"cannot read candidates of {db_path}: {exc}") from exc
    finally:
        db.conn.close()
    scores = {r["id"]: r.get("score") for r in rows}
    run = Path(run_dir).resolve().name
    lessons = []
    for r in rows:
        parent = r.get("parent_id")
        lessons.append(Lesson(
            run=run, candidate_id=int(r["id"]), parent_id=parent,
            operator=str(r.get("operator") or ""), status=str(r.get("status") or ""),
            score=r.get("score"), failure_class=r.get("failure_class"),
            hypothesis=str(r.get("hypothesis") or ""),
            outcome=outcome_text(str(r.get("status") or ""), r.get("score"),
                                 scores.get(parent), r.get("failure_class"),
                                 r.get("failure_message"), parent,
                                 str(r.get("device") or ""), str(r.get("suite") or "")),
            changes=changes_text(r.get("changes_json"))))
    return lessons


def runs_under(runs_root: Path) -> list[Path]:
    """Run directories (those holding a lineage.db) directly under runs_root."""
    root = Path(runs_root)
    if not root.is_dir():
        raise KnowledgeError(f"runs directory not found: {root}")
    return sorted(p for p in root.iterdir() if (p / LINEAGE_DB).is_file())
