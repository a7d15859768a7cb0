"""The plateau supervisor (AVO's way out of stagnation).

After `stall_limit` variations without a new best, the next session's brief says so
(prompts.session_brief fills agent_supervisor.md), lists the directions tried since the
best and their outcomes, carries what has paid off in this run (`Plateau.payoffs`: the
table of operators/payoff.py, per variation kind tries, kept, slow, failed, mean gain;
the template's `{payoffs}`), and points at knowledge documents no session has read yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from evolve import knowledge
from evolve.agent.render import one_line
from evolve.operators.payoff import what_paid_off

MAX_DIRECTIONS = 12


@dataclass
class Plateau:
    stalled: int  # variations since the best appeared
    best_id: int | None
    best_score: float | None
    directions: list[str]
    unused_knowledge: list[str]
    payoffs: str = ""  # what_paid_off(): "what has paid off in this run" ("" before any)


def _outcome(c: Any) -> str:
    if c.status == "ok":
        return f"ok, score {c.score:.3f}" if c.score is not None else "ok"
    return f"rejected {c.failure_class}: {one_line(c.failure_message, 100)}"


def knowledge_read(store: Any) -> set[str]:
    """Ids of the knowledge documents any session of the run has read."""
    seen: set[str] = set()
    for s in store.sessions():
        for step in store.agent_steps(s.id):
            if step.tool == "read_knowledge" and step.role == "tool":
                try:
                    doc = json.loads(step.arguments_json or "{}").get("doc")
                except ValueError:
                    continue
                if doc:
                    seen.add(str(doc).rsplit("/", 1)[-1].removesuffix(".md"))
    return seen


def _all_docs() -> list[tuple[str, str]]:
    try:
        return [(d.id, d.title) for d in knowledge.list_docs()]
    except knowledge.KnowledgeError:  # no knowledge base here: the note just has no pointers
        return []


def detect(store: Any, stall_limit: int, timed: bool = True) -> Plateau | None:
    """A Plateau when the last `stall_limit` (or more) variations did not beat the best."""
    if stall_limit <= 0:
        return None
    cands = store.candidates()
    best = store.best()
    best_id = best.id if best is not None else 0
    since = [c for c in cands if c.id > best_id and c.parent_id is not None]
    # sessions that ended without a candidate are variations too (an unsubmitted
    # candidate's session is counted as its candidate); an `open` one has not ended
    linked = {c.session_id for c in cands if c.session_id}
    gave_up = [s for s in store.sessions() if s.candidate_id is None
               and s.outcome not in ("submitted", "open")
               and s.id not in linked and (best is None or s.started_at > best.created_at)]
    stalled = len(since) + len(gave_up)
    if stalled < stall_limit:
        return None
    directions = [f"#{c.id} (from #{c.parent_id}, {c.operator}): {one_line(c.hypothesis, 140)}"
                  f" -> {_outcome(c)}" for c in since]
    directions += [f"session {s.id} (from #{s.parent_id}) ended {s.outcome}: "
                   f"{one_line(s.reason, 140)}" for s in gave_up]
    read = knowledge_read(store)
    unused = [f"{i} — {t}" for i, t in _all_docs() if i not in read]
    return Plateau(stalled, best.id if best else None, best.score if best else None,
                   directions[-MAX_DIRECTIONS:], unused, what_paid_off(cands, timed=timed))

