"""Compact text renderings shared by the tools and the session brief: evaluation
results, per-shape tables, one-line candidate summaries."""

from __future__ import annotations

from typing import Any

INTERPRETER_NOTE = ("CPU interpreter run: not a performance number, only a sign that the "
                    "kernel ran; correctness is what this evaluation checks")


def _num(x: Any, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def one_line(text: str | None, limit: int = 160) -> str:
    s = " ".join((text or "").split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def shapes_table(shapes: list[dict[str, Any]]) -> str:
    """A fixed-width table of per-shape results (dicts as in EvalResult.to_dict())."""
    if not shapes:
        return "(no per-shape results)"
    head = f"{'shape':<44} {'ms':>9} {'base_ms':>9} {'speedup':>8} {'error':>9} {'err_ratio':>9}"
    rows = [head]
    for s in shapes:
        rows.append(f"{one_line(str(s.get('name') or s.get('shape')), 44):<44} "
                    f"{_num(s.get('ms'), '{:.4f}'):>9} {_num(s.get('baseline_ms'), '{:.4f}'):>9} "
                    f"{_num(s.get('speedup')):>8} {_num(s.get('error'), '{:.2e}'):>9} "
                    f"{_num(s.get('error_ratio'), '{:.2f}'):>9}")
    return "\n".join(rows)


def eval_text(result: dict[str, Any], parent_score: float | None = None,
              log_chars: int = 1500) -> str:
    """What the agent sees after `evaluate`: status, failure, score, per-shape table."""
    lines = [f"status: {result.get('status')}"]
    fail = result.get("failure")
    if fail:
        where = f" (shape {fail.get('shape')})" if fail.get("shape") else ""
        lines.append(f"failure: {fail.get('class')}{where}: {fail.get('message', '')}")
    score = result.get("score")
    if result.get("device") != "cuda":
        # CPU interpreter wall clock: a change in it says nothing about GPU speed
        lines.append(f"score: {_num(score)}  ({INTERPRETER_NOTE})")
    else:
        lines.append(f"score: {_num(score)}  (geomean over shapes of baseline_ms / ms; "
                     f"primary baseline {result.get('primary_baseline') or '-'})")
        if score is not None and parent_score:
            lines.append(f"vs parent: {parent_score:.3f} -> {score:.3f} "
                         f"({(score / parent_score - 1) * 100:+.1f}%)")
    lines.append(f"suite: {result.get('suite')}  device: {result.get('device')}  "
                 f"timing: {result.get('timing')}")
    val = result.get("validation") or {}
    if val:
        lines.append(f"validation: {val.get('passed', '-')}/{val.get('checked', '-')} checks passed"
                     f", max error ratio {_num(val.get('max_error_ratio'), '{:.2f}')}")
    lines.append(shapes_table(result.get("shapes") or []))
    tail = (result.get("log_tail") or "").strip()
    if result.get("status") != "ok" and tail:
        lines.append("worker log tail:\n" + tail[-log_chars:])
    return "\n".join(lines)


def candidate_line(c: Any, best_id: int | None = None) -> str:
    """`#7 ok 0.931 parent #3 agent :: hypothesis` (or the failure class for rejects)."""
    mark = " [best]" if best_id is not None and c.id == best_id else ""
    if c.unsubmitted:
        mark += " [unsubmitted]"
    if c.status == "ok":
        outcome = f"ok {_num(c.score)}"
    else:
        outcome = f"rejected {c.failure_class or '?'}"
    parent = "-" if c.parent_id is None else f"#{c.parent_id}"
    if c.parent2_id is not None:
        parent += f"+#{c.parent2_id}"
    return (f"#{c.id}{mark} {outcome} parent {parent} {c.operator} :: "
            f"{one_line(c.hypothesis, 140)}")


def failure_line(c: Any) -> str:
    return (f"#{c.id} {c.failure_class or '?'} (parent #{c.parent_id}, {c.operator}): "
            f"{one_line(c.failure_message, 240)} | tried: {one_line(c.hypothesis, 120)}")


def top_lines(store: Any, n: int) -> list[str]:
    """The run's n best-scoring candidates, one line each, the best marked."""
    best = store.best()
    ok = sorted(store.candidates("ok"), key=lambda c: -(c.score or 0.0))[:n]
    return [candidate_line(c, best.id if best else None) for c in ok]


def failure_lines(store: Any, n: int) -> list[str]:
    return [failure_line(c) for c in store.candidates("rejected")[-n:]]
