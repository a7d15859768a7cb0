"""Lessons learned by runs: one searchable `Entry` per evaluated candidate.

A lesson is read from the `candidates` table of a run's `lineage.db` (schema in
docs/architecture.md), opened read-only: the orchestrator is its only writer, so lessons
are never stored there; `evolve.knowledge.search` indexes them with the documents.
"""

from __future__ import annotations

import json
from pathlib import Path

from evolve import read
from evolve.knowledge import Entry, KnowledgeError


def lesson(run: str, row: dict, parent_score: float | None) -> Entry:
    """The lesson of one candidates row: its hypothesis, outcome and changes."""
    hypothesis = str(row.get("hypothesis") or "").strip()
    operator, status = str(row.get("operator") or ""), str(row.get("status") or "")
    first = (hypothesis.splitlines() or [""])[0]
    outcome = outcome_text(status, row.get("score"), parent_score, row.get("failure_class"),
                           row.get("failure_message"), row.get("parent_id"),
                           str(row.get("device") or ""), str(row.get("suite") or ""))
    changes = changes_text(row.get("changes_json"))
    return Entry(kind="lesson", key=f"{run}#{row['id']}", run=run,
                 title=f"candidate {row['id']} ({operator}): {first}"[:160],
                 tags=" ".join(x for x in (operator, status, row.get("failure_class")) if x),
                 body=f"{hypothesis}\nOutcome: {outcome}" + (f"\nChanges: {changes}" if changes else ""))


def outcome_text(status: str, score: float | None, parent_score: float | None,
                 failure_class: str | None, failure_message: str | None,
                 parent_id: int | None, device: str = "", suite: str = "") -> str:
    """'ok, score 0.910 (+4.6% vs parent 0.870, gain)' or 'rejected: mismatch: ...'.

    Scores measured in the CPU interpreter are wall-clock times of Python code, so the
    outcome says so and shows no change against the parent: an agent must not read them
    as GPU evidence."""
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
    elif parent_score and device and device != "cuda":
        text += f" (parent {parent_score:.3f})"
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
    """`{"knobs": {"BLOCK_M": {"from": 128, "to": 64}}, "recipes": [...]}` (any JSON object)
    as one line: 'knobs BLOCK_M 128 -> 64; recipes swap_grid_order'."""
    parts = []
    for key, value in read.json_dict(changes_json).items():  # Candidate.proposed writes an object
        if value in (None, "", [], {}):
            continue
        if key == "knobs" and isinstance(value, dict):
            value = ", ".join(f"{k} {v['from']} -> {v['to']}" if isinstance(v, dict) and {"from", "to"} <= set(v)
                              else f"{k}={v}" for k, v in value.items())
        elif key == "recipes" and isinstance(value, list):
            value = ", ".join(map(str, value))
        else:
            value = json.dumps(value, sort_keys=True)
        parts.append(f"{key} {value}")
    return "; ".join(parts)[:600]


def run_lessons(run_dir: Path) -> list[Entry]:
    """All lessons of one run directory (one per candidates row), read by evolve.read."""
    try:
        rows = read.read_snapshot(Path(run_dir)).candidates
    except read.RunNotReady as exc:
        raise KnowledgeError(str(exc)) from exc
    scores = {r["id"]: r.get("score") for r in rows}
    run = Path(run_dir).resolve().name
    return [lesson(run, r, scores.get(r.get("parent_id"))) for r in rows]
