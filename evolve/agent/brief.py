"""Builds the system prompt and the per-session brief from the run's state."""

from __future__ import annotations

from typing import Any

from evaluator import get_target
from evolve.agent import supervisor
from evolve.agent.budget import SessionBudget
from evolve.agent.prompts import Prompts, render
from evolve.agent.render import failure_lines, one_line, shapes_table, top_lines

CPU_NOTE = ("Device: no GPU here. `evaluate` runs the CPU interpreter smoke suite "
            "(TRITON_INTERPRET=1, tiny shapes): it checks correctness only; its timings and "
            "scores are meaningless for performance, so judge ideas by reasoning and the "
            "knowledge base, and use evaluate to make sure the kernel is correct.")
GPU_NOTE = ("Device: a GPU. `evaluate` measures real kernel times against the baseline "
            "(cuDNN SDPA); the score is the geometric-mean speedup over the suite's shapes.")


def system_prompt(prompts: Prompts, run: Any, parent_id: int) -> str:
    cfg = run.config
    return render(prompts.system, {
        "target": cfg.target, "target_description": get_target(cfg.target).description,
        "parent_id": parent_id, "device_note": GPU_NOTE if cfg.gpu else CPU_NOTE,
    })


def _parent_shapes(parent: Any) -> str:
    text = shapes_table(parent.result.get("shapes", []))
    if parent.status != "ok":
        text += f"\n(the parent was rejected: {parent.failure_class}: " \
                f"{one_line(parent.failure_message, 200)})"
    return text


_SHOWN_ELSEWHERE = {"best_id", "best_score", "candidates", "gpu"}


def _notes(brief: dict[str, Any]) -> str:
    items = [f"- {k}: {v}" for k, v in (brief or {}).items()
             if k not in _SHOWN_ELSEWHERE and v not in (None, "", [], {})]
    return "## Notes from the orchestrator\n\n" + "\n".join(items) + "\n" if items else ""


def session_brief(prompts: Prompts, ctx: Any, budget: SessionBudget, stall_limit: int) -> tuple[str, supervisor.Plateau | None]:
    run, parent = ctx.run, ctx.parent
    store = run.store
    plateau = supervisor.detect(store, stall_limit)
    second = ""
    if ctx.second is not None:
        second = (f"A second parent is offered for crossover: #{ctx.second.id} "
                  f"(score {ctx.second.score}): {one_line(ctx.second.hypothesis, 200)}. "
                  f"Use show_candidate({ctx.second.id}) or diff({parent.id}, {ctx.second.id}) "
                  "to borrow its ideas.")
    text = render(prompts.brief, {
        "target": run.config.target, "parent_id": parent.id,
        "parent_score": "-" if parent.score is None else f"{parent.score:.3f}",
        "parent_operator": parent.operator, "parent_depth": parent.depth,
        "parent_hypothesis": one_line(parent.hypothesis, 400) or "(seed)",
        "parent_source": ctx.parent_source.rstrip("\n"),
        "parent_shapes": _parent_shapes(parent),
        "best_scores": "\n".join(top_lines(store, 5)) or "(no candidate has a score yet)",
        "recent_failures": "\n".join(failure_lines(store, 5)) or "(no failures yet)",
        "second": second,
        "supervisor": supervisor.note(prompts.supervisor, plateau),
        "notes": _notes(ctx.brief),
        "budgets": budget.describe(), "suite": run.config.suite,
    })
    return text, plateau
