"""The agent's prompts: the files (defaults in evolve/prompts/, overridable per file by a
user directory, `--prompts DIR`) and the system prompt and session brief filled from the
run's state. Placeholders are `{name}`; unknown names and other braces are left as they
are (so code in a prompt needs no escaping).

The brief's facts come from records, never from this process: the GPU, its SMs and
compute capability and the torch/triton/CUDA versions from the `env` of a recorded
EvalResult (the parent's, else the newest that has one; the orchestrator does not
initialise CUDA), the shapes from the target's suite, the pre-screen and rematch rules
from the run's config, the knowledge list from the knowledge base."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from evaluator import MIN_MARGIN, get_target
from evolve import knowledge
from evolve.agent import supervisor
from evolve.agent.budget import SessionBudget
from evolve.agent.render import (INTERPRETER_NOTE, failure_lines, one_line, shapes_table,
                                 top_lines)
from evolve.operators.payoff import what_paid_off

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
    rules_cpu: str  # the brief's {rules}: scoring, pre-screen, rematch without a GPU
    rules_gpu: str

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


def tool_lines(registry: Any) -> str:
    """One line per tool of the registry: `name(arg, arg?)`: its description."""
    out = []
    for t in registry.tools.values():
        props, req = t.parameters.get("properties", {}), t.parameters.get("required", [])
        args = ", ".join(k if k in req else f"{k}?" for k in props)
        out.append(f"- {t.name}({args}): {t.description}")
    return "\n".join(out)


def system_prompt(prompts: Prompts, run: Any, parent_id: int, registry: Any) -> str:
    cfg = run.config
    target = get_target(cfg.target)
    return render(prompts.system, {
        "target": target.name, "target_description": target.description,
        "target_contract": target.contract, "parent_id": parent_id,
        "tools": tool_lines(registry), "context_tokens": cfg.agent.context_tokens,
        "device_note": (prompts.device_gpu if cfg.gpu else prompts.device_cpu).strip(),
    })


def recorded_env(store: Any, parent: Any) -> tuple[int, dict[str, Any]] | None:
    """(candidate id, env) of the parent's recorded evaluation, else of the newest one."""
    for c in [parent, *reversed(store.candidates())]:
        env = c.result.get("env")
        if env:
            return c.id, env
    return None


def machine(store: Any, parent: Any, gpu: bool) -> str:
    """The GPU (or the interpreter) and the software versions, as an evaluation recorded them."""
    found = recorded_env(store, parent)
    if found is None:
        return ("(no evaluation has recorded its machine yet)" if gpu else
                "No GPU: the Triton CPU interpreter (TRITON_INTERPRET=1).")
    cid, env = found
    soft = (f"torch {env.get('torch', '?')}, triton {env.get('triton', '?')}, "
            f"CUDA {env.get('cuda') or '-'}, Python {env.get('python', '?')}")
    if env.get("gpu"):
        return (f"GPU: {env['gpu']}, {env.get('sm_count', '?')} SMs, compute capability "
                f"{env.get('capability', '?')}, {env.get('memory_gib', '?')} GiB; driver "
                f"{env.get('driver') or '?'}.\nSoftware: {soft}.\n(as recorded by the "
                f"evaluation of #{cid})")
    return (f"No GPU: evaluations run the Triton CPU interpreter (TRITON_INTERPRET=1).\n"
            f"Software: {soft}.\n(as recorded by the evaluation of #{cid})")


def rules(prompts: Prompts, cfg: Any) -> str:
    """Scoring, pre-screen and rematch rules of this run (agent_rules_{gpu,cpu}.md)."""
    if not cfg.gpu:
        return prompts.rules_cpu.strip()
    if cfg.prescreen and cfg.suite == "default":
        state = "on in this run"
    else:
        state = ("off in this run: it runs only with the default suite" if cfg.prescreen
                 else "switched off in this run")
    return render(prompts.rules_gpu, {
        "prescreen_state": state, "prescreen_ratio": f"{cfg.prescreen_ratio:g}",
        "quick_shapes": "\n".join(f"    {q.name}" for q in get_target(cfg.target).suite("quick")),
        "rounds": cfg.rematch_rounds, "margin": f"{MIN_MARGIN:.0%}",
        "baseline": (cfg.baselines or ["cudnn"])[0]}).strip()


def knowledge_list() -> str:
    try:
        docs = knowledge.list_docs()
    except knowledge.KnowledgeError as e:
        return f"(no knowledge base: {e})"
    return "\n".join(f"- {d.id}: {one_line(d.title, 100)}" for d in docs) or "(none)"


def _budgets(budget: SessionBudget, cfg: Any, spent_usd: float) -> str:
    agent = cfg.agent
    lines = [f"- {budget.describe()}",
             f"- each request is kept under {agent.context_tokens} tokens (older tool outputs "
             "become stubs)",
             f"- {agent.max_nudges} nudge(s) for answers without a tool call, then the "
             "session ends"]
    if agent.max_usd is not None:
        lines.append(f"- the run's spending cap is ${agent.max_usd:.2f} "
                     f"(${spent_usd:.2f} spent before this session)")
    return "\n".join(lines)


def _parent_shapes(parent: Any, gpu: bool) -> str:
    shapes = parent.result.get("shapes", [])
    text = shapes_table(shapes)
    if shapes and not gpu:
        text += f"\n({INTERPRETER_NOTE})"
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
        "payoffs": _table(plateau.payoffs),
    })


def _table(text: str) -> str:
    return f"```\n{text}\n```" if text else "(no variation measured yet)"


def _payoffs(store: Any, plateau: supervisor.Plateau | None, timed: bool) -> str:
    """The brief's "what has paid off" section; on a plateau the supervisor note has it."""
    if plateau is not None:
        return ""
    table = what_paid_off(store.candidates(), timed=timed)
    return f"## What has paid off in this run\n\n{_table(table)}\n" if table else ""


_SHOWN_ELSEWHERE = {"best_id", "best_score", "candidates", "gpu"}


def _notes(brief: dict[str, Any]) -> str:
    items = [f"- {k}: {v}" for k, v in (brief or {}).items()
             if k not in _SHOWN_ELSEWHERE and v not in (None, "", [], {})]
    return "## Notes from the orchestrator\n\n" + "\n".join(items) + "\n" if items else ""


def session_brief(prompts: Prompts, ctx: Any, budget: SessionBudget, stall_limit: int,
                  spent_usd: float = 0.0) -> tuple[str, supervisor.Plateau | None]:
    run, parent = ctx.run, ctx.parent
    store, cfg = run.store, run.config
    plateau = supervisor.detect(store, stall_limit, timed=bool(cfg.gpu))
    second = ""
    if ctx.second is not None:
        second = (f"A second parent is offered for crossover: #{ctx.second.id} "
                  f"(score {ctx.second.score}): {one_line(ctx.second.hypothesis, 200)}. "
                  f"Use show_candidate({ctx.second.id}) or diff({parent.id}, {ctx.second.id}) "
                  "to borrow its ideas.")
    score = "-" if parent.score is None else f"{parent.score:.3f}"
    if parent.score is not None and not cfg.gpu:
        score += ", interpreter: not a performance number"
    shapes = get_target(cfg.target).suite(cfg.suite)
    text = render(prompts.brief, {
        "target": cfg.target, "parent_id": parent.id, "parent_score": score,
        "parent_operator": parent.operator, "parent_depth": parent.depth,
        "parent_hypothesis": one_line(parent.hypothesis, 400) or "(seed)",
        "parent_source": ctx.parent_source.rstrip("\n"),
        "parent_shapes": _parent_shapes(parent, cfg.gpu),
        "machine": machine(store, parent, cfg.gpu), "rules": rules(prompts, cfg),
        "suite_count": len(shapes), "suite_shapes": "\n".join(f"- {s.name}" for s in shapes),
        "knowledge_list": knowledge_list(),
        "best_scores": "\n".join(top_lines(store, 5)) or "(no candidate has a score yet)",
        "recent_failures": "\n".join(failure_lines(store, 5)) or "(no failures yet)",
        "second": second,
        "supervisor": _plateau_note(prompts.supervisor, plateau),
        "payoffs": _payoffs(store, plateau, bool(cfg.gpu)),
        "notes": _notes(ctx.brief),
        "budgets": _budgets(budget, cfg, spent_usd), "suite": cfg.suite,
    })
    return text, plateau
