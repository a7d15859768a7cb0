"""The agent's prompts: the files (defaults in evolve/prompts/, overridable per file by a
user directory, `--prompts DIR`) and the system prompt and session brief filled from the
run's state. Placeholders are `{name}`; unknown names and other braces are left as they
are (so code in a prompt needs no escaping)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from evaluator import get_target
from evolve.agent import supervisor
from evolve.agent.budget import SessionBudget
from evolve.agent.render import failure_lines, one_line, shapes_table, top_lines

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts"
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class PromptError(Exception):
    """A prompt directory or file is missing or unreadable."""


def render(template: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values
                            else m.group(0), template)


@dataclass
class Prompts:
    """One field per prompt file: `system` is agent_system.md, and so on."""
    system: str
    brief: str
    supervisor: str
    nudge: str
    device_cpu: str  # the system prompt's {device_note} without a GPU
    device_gpu: str

    @classmethod
    def load(cls, override_dir: Path | str | None = None) -> "Prompts":
        """Each file from override_dir when it has it, else the packaged default."""
        override = Path(override_dir) if override_dir else None
        if override is not None and not override.is_dir():
            raise PromptError(f"prompts directory {override} does not exist")
        texts = {}
        for f in fields(cls):
            name = f"agent_{f.name}.md"
            own = override / name if override else None
            path = own if own is not None and own.is_file() else DEFAULT_DIR / name
            try:
                texts[f.name] = path.read_text(encoding="utf-8")
            except OSError as e:
                raise PromptError(f"cannot read prompt {path}: {e.strerror}") from None
        return cls(**texts)


def system_prompt(prompts: Prompts, run: Any, parent_id: int) -> str:
    cfg = run.config
    target = get_target(cfg.target)
    return render(prompts.system, {
        "target": target.name, "target_description": target.description,
        "target_contract": target.contract,
        "parent_id": parent_id,
        "device_note": (prompts.device_gpu if cfg.gpu else prompts.device_cpu).strip(),
    })


def _parent_shapes(parent: Any) -> str:
    text = shapes_table(parent.result.get("shapes", []))
    if parent.status != "ok":
        text += f"\n(the parent was rejected: {parent.failure_class}: " \
                f"{one_line(parent.failure_message, 200)})"
    return text


def _plateau_note(template: str, plateau: supervisor.Plateau | None) -> str:
    """The supervisor section of the brief ('' when there is no plateau)."""
    if plateau is None:
        return ""
    return render(template, {
        "stalled": plateau.stalled,
        "best_id": "-" if plateau.best_id is None else plateau.best_id,
        "best_score": "-" if plateau.best_score is None else f"{plateau.best_score:.3f}",
        "directions": "\n".join(f"- {d}" for d in plateau.directions) or "- (none recorded)",
        "unused_knowledge": "\n".join(f"- {u}" for u in plateau.unused_knowledge)
        or "- (every document has been read at least once; search for lessons instead)",
    })


_SHOWN_ELSEWHERE = {"best_id", "best_score", "candidates", "gpu"}


def _notes(brief: dict[str, Any]) -> str:
    items = [f"- {k}: {v}" for k, v in (brief or {}).items()
             if k not in _SHOWN_ELSEWHERE and v not in (None, "", [], {})]
    return "## Notes from the orchestrator\n\n" + "\n".join(items) + "\n" if items else ""


def session_brief(prompts: Prompts, ctx: Any, budget: SessionBudget,
                  stall_limit: int) -> tuple[str, supervisor.Plateau | None]:
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
        "supervisor": _plateau_note(prompts.supervisor, plateau),
        "notes": _notes(ctx.brief),
        "budgets": budget.describe(), "suite": run.config.suite,
    })
    return text, plateau
