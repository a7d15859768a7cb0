"""The agent's tools (names and arguments fixed by the spec) over a SessionState, the
mutable state of one session: the working copy and what the tools did to it.

Long texts (the kernel, a knowledge document) are read by line range: each answer says
which lines it shows of how many, and where the next page starts, so nothing is cut out
of the middle. Answers that a newer one replaces are `Marked` (see agent/context.py)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from evaluator import EvalResult
from evolve import knowledge
from evolve.agent import gpu_tools
from evolve.agent.budget import SessionBudget
from evolve.agent.context import Mark
from evolve.agent.render import (candidate_line, eval_text, failure_lines, shapes_table,
                                 top_lines)
from evolve.agent.tools import Marked, Tool, ToolError, ToolRegistry
from evolve.records import sha256_text

KERNEL_LIMIT = 20000  # show_candidate's output
PAGE_CHARS = 20000  # characters of one read_kernel / read_knowledge page (whole lines)
PAGE_LIMIT = PAGE_CHARS + 600  # the page plus its header and footer: never truncated


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or [],
            "additionalProperties": False}


@dataclass
class SessionState:
    ctx: Any  # evolve.operators.base.VariationContext
    source: str  # the working copy
    budget: SessionBudget
    ended: bool = False
    outcome: str | None = None  # "submitted" | "gave_up" once a tool ended the session
    hypothesis: str = ""
    reason: str = ""
    edits: int = 0
    evals: list[EvalResult] = field(default_factory=list)  # the agent's evaluations
    evaluated_sha: str = ""  # sha256 of the source the last of them evaluated
    knowledge_read: list[str] = field(default_factory=list)
    passed: list[tuple[str, EvalResult]] = field(default_factory=list)  # ok: (source, result)

    @property
    def run(self) -> Any:
        return self.ctx.run

    def record_evaluation(self, res: EvalResult) -> None:
        """An evaluation of the working copy as it is now (evaluate, compile_info, profile)."""
        self.evals.append(res)
        self.evaluated_sha = sha256_text(self.source)
        if res.ok:
            self.passed.append((self.source, res))

    def best_verified(self) -> tuple[str, EvalResult] | None:
        """The working copy state to keep when the session ends without submit: of the
        states this session evaluated ok and that differ from the parent (on the run's
        suite when any was), the best score on a GPU; without one (interpreter scores are
        no performance numbers) the latest."""
        kept = [(src, r) for src, r in self.passed if src != self.ctx.parent_source]
        if not kept:
            return None
        kept = [p for p in kept if p[1].suite == self.run.config.suite] or kept
        if not self.run.config.gpu:
            return kept[-1]
        return max(reversed(kept), key=lambda p: p[1].score or 0.0)


# ---------------------------------------------------------------- lineage tools

def lineage(st: SessionState, a: dict[str, Any]) -> Marked:
    store = st.run.store
    best = store.best()
    best_id = best.id if best else None
    n = a["n"]
    if a["view"] == "top":
        rows = top_lines(store, n)
        title = f"top {len(rows)} candidates by score"
    elif a["view"] == "recent":
        rows = [candidate_line(c, best_id) for c in store.candidates()[-n:]]
        title = f"{len(rows)} most recent candidates"
    else:
        rows = failure_lines(store, n)
        title = f"{len(rows)} most recent failures"
    counts = store.counts()
    head = (f"{title} (run has {counts['total']} candidates; your parent is #{st.ctx.parent.id}"
            f"{'' if best_id is None else f'; best is #{best_id}'})")
    text = "\n".join([head, *rows]) if rows else head + "\n(none)"
    return Marked(text, Mark(f"lineage:{a['view']}"))


def show_candidate(st: SessionState, a: dict[str, Any]) -> Marked:
    run = st.run
    c = run.store.get_candidate(a["id"])
    if c is None:
        raise ToolError(f"no candidate #{a['id']}; use lineage to list candidates")
    lines = [candidate_line(c), f"hypothesis: {c.hypothesis}"]
    if c.status != "ok":
        lines.append(f"failure: {c.failure_class}: {c.failure_message}")
    lines.append(shapes_table(c.result.get("shapes", [])))
    try:
        src = run.repo.source_at(c.id)
    except Exception as e:  # RepoError and git errors: report, do not crash
        src = f"(source unavailable: {e})"
    lines.append(f"--- kernel.py of #{c.id} ---\n{src}")
    return Marked("\n".join(lines), Mark(f"candidate:{c.id}"))


def _source_of(st: SessionState, ref: int | str) -> tuple[str, str]:
    if ref == "working":
        return "working", st.source
    if isinstance(ref, str) and not ref.isdigit():
        raise ToolError("a and b are candidate ids or the string \"working\"")
    cid = int(ref)
    if st.run.store.get_candidate(cid) is None:
        raise ToolError(f"no candidate #{cid}")
    return f"#{cid}", st.run.repo.source_at(cid)


def diff(st: SessionState, a: dict[str, Any]) -> Marked:
    (na, sa), (nb, sb) = _source_of(st, a["a"]), _source_of(st, a["b"])
    text = "".join(difflib.unified_diff(sa.splitlines(True), sb.splitlines(True),
                                        fromfile=na, tofile=nb, n=3))
    return Marked(text or f"{na} and {nb} are identical", Mark(f"diff:{na}:{nb}"))


# -------------------------------------------------------------- knowledge tools

def search_knowledge(st: SessionState, a: dict[str, Any]) -> str:
    try:
        hits = knowledge.search(a["query"], a["k"], run_dir=st.run.paths.root)
    except knowledge.KnowledgeError as e:
        raise ToolError(str(e)) from None
    if not hits:
        return "no hits; try other words"
    out = []
    for h in hits:
        where = f" (run {h.run})" if h.run else ""
        out.append(f"[{h.kind}] {h.id}{where} — {h.title} (score {h.score:.2f})\n  {h.snippet}")
    return "\n".join(out) + "\n(read a [doc] with read_knowledge(doc=<id>))"


def page(text: str, start: int, end: int | None, *, title: str, topic: str,
         more: str) -> Marked:
    """Lines start..end (1-based, inclusive; end None: to the last) of text, whole lines up
    to PAGE_CHARS characters, under a header naming the range and the line count; when
    lines are left, a footer with the call that reads on (`more` with `{start}` in it).
    Marked with the lines actually shown (topic, None when all of them)."""
    lines = text.splitlines(keepends=True)
    total = len(lines)
    if start > max(total, 1):
        raise ToolError(f"start {start} is past the last line ({total})")
    if end is not None and end < start:
        raise ToolError(f"end {end} is before start {start}")
    last = total if end is None else min(end, total)
    shown: list[str] = []
    size = 0
    for i in range(start - 1, last):
        if shown and size + len(lines[i]) > PAGE_CHARS:
            break
        shown.append(lines[i][:PAGE_CHARS])
        size += len(shown[-1])
    stop = start + len(shown) - 1
    out = [f"{title}: lines {start}-{stop} of {total} ({len(text)} characters in all)",
           "".join(shown).rstrip("\n")]
    if stop < last:
        out.append(f"[lines {stop + 1}-{last} not shown (a page holds {PAGE_CHARS} "
                   f"characters): {more.format(start=stop + 1)}]")
    whole = start == 1 and stop >= total
    return Marked("\n".join(out), Mark(topic, None if whole else (start, stop)))


def read_knowledge(st: SessionState, a: dict[str, Any]) -> Marked:
    try:
        doc = knowledge.read(a["doc"])
    except knowledge.KnowledgeError as e:
        raise ToolError(str(e)) from None
    if doc.id not in st.knowledge_read:
        st.knowledge_read.append(doc.id)
    text = (f"# {doc.title}\nid: {doc.id}  tags: {', '.join(doc.tags)}  "
            f"applies_to: {', '.join(doc.applies_to)}\n\n{doc.body}")
    return page(text, a["start"], a.get("end"), title=f"knowledge document {doc.id}",
                topic=f"knowledge:{doc.id}",
                more=f'read_knowledge(doc="{doc.id}", start={{start}})')


# ------------------------------------------------------------------ kernel tools

def read_kernel(st: SessionState, a: dict[str, Any]) -> Marked:
    return page(st.source, a["start"], a.get("end"),
                title=f"kernel.py, working copy (parent #{st.ctx.parent.id})", topic="kernel",
                more="read_kernel(start={start})")


def _syntax_note(source: str) -> str:
    try:
        compile(source, "kernel.py", "exec")
    except SyntaxError as e:
        return f"\nwarning: the working copy has a syntax error at line {e.lineno}: {e.msg}"
    return ""


def write_kernel(st: SessionState, a: dict[str, Any]) -> Marked:
    src = a["source"]
    if not src.strip():
        raise ToolError("source is empty")
    st.source = src if src.endswith("\n") else src + "\n"
    st.edits += 1
    # the new text is in the call's arguments: it supersedes every older view of the kernel
    return Marked(f"written: {len(st.source)} characters, {st.source.count(chr(10))} lines"
                  + _syntax_note(st.source), Mark("kernel"))


def edit_kernel(st: SessionState, a: dict[str, Any]) -> str:
    old, new = a["old"], a["new"]
    count = st.source.count(old)
    if count == 0:
        first = old.strip().splitlines()[0] if old.strip() else old
        close = difflib.get_close_matches(first, st.source.splitlines(), n=1, cutoff=0.6)
        hint = f"; closest line: {close[0]!r}" if close else ""
        raise ToolError("`old` was not found in the working copy (it must match exactly, "
                        f"whitespace included; read_kernel shows the current text){hint}")
    if count > 1:
        raise ToolError(f"`old` occurs {count} times; include more surrounding lines so it "
                        "is unique")
    if old == new:
        raise ToolError("`old` and `new` are identical")
    start = st.source.index(old)
    st.source = st.source[:start] + new + st.source[start + len(old):]
    st.edits += 1
    line = st.source.count("\n", 0, start) + 1
    lines = st.source.splitlines()
    lo, hi = max(0, line - 3), min(len(lines), line + new.count("\n") + 2)
    context = "\n".join(f"{i + 1:4d}  {lines[i]}" for i in range(lo, hi))
    return f"edited at line {line}:\n{context}" + _syntax_note(st.source)


def evaluate(st: SessionState, a: dict[str, Any]) -> Marked:
    if st.budget.evaluations_left() <= 0:
        raise ToolError(f"evaluation budget used up ({st.budget.evaluations} of "
                        f"{st.budget.max_evaluations}); submit or give_up")
    default = st.run.config.suite  # the run's suite ("smoke" without a GPU)
    suite = a.get("suite") or default
    note = ""
    if not st.run.config.gpu and suite != default:
        note = f"(no GPU here: ran the {default} suite instead of {suite})\n"
        suite = default
    st.budget.evaluations += 1
    res = st.ctx.evaluate(st.source, suite)
    st.record_evaluation(res)
    left = st.budget.evaluations_left()
    return Marked(note + eval_text(res.to_dict(), st.ctx.parent.score)
                  + f"\n({left} evaluation{'s' if left != 1 else ''} left in this session)",
                  Mark("evaluation"))


def submit(st: SessionState, a: dict[str, Any]) -> str:
    if st.source == st.ctx.parent_source:
        raise ToolError("the working copy is identical to the parent; edit it first, "
                        "or give_up")
    st.ended, st.outcome, st.hypothesis = True, "submitted", a["hypothesis"].strip()
    return "submitted; the orchestrator evaluates the kernel and records it"


def give_up(st: SessionState, a: dict[str, Any]) -> str:
    st.ended, st.outcome, st.reason = True, "gave_up", a["reason"].strip()
    return "session ended without a candidate"


def build_registry() -> ToolRegistry:
    n = {"type": "integer", "minimum": 1, "maximum": 50, "default": 8}
    ref = {"type": ["integer", "string"],
           "description": "a candidate id, or \"working\" for your working copy"}
    text = {"type": "string", "minLength": 1}
    lines = {"start": {"type": "integer", "minimum": 1, "default": 1,
                       "description": "first line to show (1-based)"},
             "end": {"type": "integer", "minimum": 1,
                     "description": "last line to show (default: to the end)"}}
    return ToolRegistry([
        Tool("lineage", "List candidates of this run: the best by score (top), the newest "
             "(recent), or the newest rejected ones with failure class and message (failures).",
             _obj({"view": {"type": "string", "enum": ["top", "recent", "failures"]}, "n": n},
                  ["view"]), lineage),
        Tool("show_candidate", "One candidate: hypothesis, outcome, per-shape results and "
             "its kernel source.", _obj({"id": {"type": "integer", "minimum": 0}}, ["id"]),
             show_candidate, limit=KERNEL_LIMIT),
        Tool("diff", "Unified diff between two candidates' kernels, or a candidate and "
             "\"working\" (your working copy).", _obj({"a": ref, "b": ref}, ["a", "b"]), diff),
        Tool("search_knowledge", "Ranked search of the knowledge base (Triton/attention "
             "techniques, evaluator rules) and of lessons from evaluated candidates.",
             _obj({"query": text, "k": {"type": "integer", "minimum": 1, "maximum": 20,
                                        "default": 5}}, ["query"]), search_knowledge),
        Tool("read_knowledge", "Read one knowledge document by id (as listed by "
             "search_knowledge), lines start..end; the answer says how many lines there "
             "are and where the next page starts.",
             _obj({"doc": text, **lines}, ["doc"]), read_knowledge, limit=PAGE_LIMIT),
        Tool("read_kernel", "The current working copy of kernel.py, lines start..end (1-based, "
             "inclusive; default: all, in pages of whole lines); the answer says how many "
             "lines there are and where the next page starts.", _obj(lines), read_kernel,
             limit=PAGE_LIMIT),
        Tool("write_kernel", "Replace the whole working copy with `source`.",
             _obj({"source": text}, ["source"]), write_kernel),
        Tool("edit_kernel", "Replace the exact, unique substring `old` of the working copy "
             "with `new`.", _obj({"old": text, "new": {"type": "string"}}, ["old", "new"]),
             edit_kernel),
        Tool("evaluate", "Run the real evaluator (static check, correctness against the "
             "reference, timing) on the working copy. Counts against the evaluation budget.",
             _obj({"suite": {"type": "string", "enum": ["smoke", "quick", "default"]}}),
             evaluate),
        *gpu_tools.tools(),
        Tool("submit", "End the session: the working copy becomes a candidate (child of "
             "your parent). `hypothesis` says what you changed and the expected effect.",
             _obj({"hypothesis": text}, ["hypothesis"]), submit),
        Tool("give_up", "End the session without a candidate.", _obj({"reason": text},
                                                                       ["reason"]), give_up),
    ])
