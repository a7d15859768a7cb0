"""Rendering of runs for `evolve status / best / show` (rich; plain text off a terminal)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from evaluator import EvalResult, spread
from evolve import read
from evolve.profile_text import overlap_lines, profile_lines
from evolve.read import short_shape
from evolve.records import Candidate
from evolve.run import RunHandle

LONG_FLOAT = re.compile(r"\d+\.\d{5,}")


def _compact(table: Table) -> Table:
    """No vertical borders and one space between columns: tables fit 80 columns."""
    table.box, table.padding, table.pad_edge, table.collapse_padding = box.SIMPLE_HEAD, (0, 1), False, True
    return table


def round_floats(text: str) -> str:
    """`ratio 1.0505317048116145` -> `ratio 1.051` (messages stored by older runs)."""
    return LONG_FLOAT.sub(lambda m: f"{float(m.group()):.4g}", text)


def make_console(stderr: bool = False) -> Console:
    """A console as wide as the terminal (or $COLUMNS); off a terminal without $COLUMNS (pipes),
    160 columns so that lines stay whole."""
    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(stderr=stderr, width=160)
    return console


def summary(run: RunHandle) -> read.RunSummary:
    """The run summed up by the dashboard's rules (evolve.read.summarize): its folder label, the
    champion, the effective status, the wall time from creation to the latest activity (now,
    while a live loop runs)."""
    return read.list_runs(run.paths.root)[0]


def _num(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def runs_table(runs: list[RunHandle]) -> Table:
    t = _compact(Table(title="runs", show_lines=False))
    for col in ("run", "target", "operator", "status", "candidates", "best", "best score",
                "elapsed"):
        t.add_column(col, justify="right" if col in ("candidates", "best score") else "left")
    for s in map(summary, runs):
        t.add_row(s.label, s.record.target, s.record.operator, s.status, str(s.candidates),
                  "-" if s.best_id is None else f"#{s.best_id}", _num(s.best_score),
                  read.fmt_elapsed(s.elapsed_s))
    return t


def run_summary(run: RunHandle) -> Group:
    counts = run.store.counts()
    s = summary(run)
    rec = s.record
    totals = run.store.totals()
    fp = run.fingerprint
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", justify="right")
    t.add_column()
    t.add_row("run", f"{s.label}  {run.paths.root}")
    t.add_row("target / suite", f"{rec.target} / {rec.suite}")
    t.add_row("operator", rec.operator + (f" ({rec.model})" if rec.model else ""))
    cfg = run.config
    t.add_row("scale-out", f"{cfg.proposers} proposer(s), {cfg.executor} executor"
              + (f" at {cfg.ray_address}" if cfg.ray_address else "") + ", GPUs "
              + ("all" if cfg.gpus is None else ",".join(map(str, cfg.gpus)))
              + ("" if cfg.gpu else " (none here: one interpreter worker)"))
    t.add_row("status", s.status)
    t.add_row("created", rec.created_at)
    t.add_row("elapsed", read.fmt_elapsed(s.elapsed_s))
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(counts["by_status"].items())) or "none"
    t.add_row("candidates", f"{counts['total']} ({by_status})")
    if counts["by_class"]:
        t.add_row("failures", ", ".join(f"{k} {v}" for k, v in counts["by_class"].items()))
    t.add_row("best", "-" if s.best_id is None else f"#{s.best_id} score {_num(s.best_score)}")
    if totals["tokens_in"] or totals["cost_usd"]:
        t.add_row("tokens / cost", f"{totals['tokens_in']} in, {totals['tokens_out']} out, "
                  f"${totals['cost_usd']:.4f}")
    t.add_row("device", str(fp.get("gpu") or "no GPU (Triton interpreter)"))
    t.add_row("software", f"torch {fp.get('torch', '?')}, triton {fp.get('triton', '?')}, "
              f"python {fp.get('python', '?')}")
    events = run.store.events()[-5:]
    ev = _compact(Table(title="last events", show_header=True))
    for col in ("time", "kind", "id", "message"):
        ev.add_column(col, no_wrap=col != "message")
    for e in events:
        ev.add_row(e.ts[11:19], e.kind, "-" if e.candidate_id is None else str(e.candidate_id),
                   round_floats(e.message))
    return Group(t, ev)


def workers_table(workers: list[dict[str, Any]]) -> Table:
    """The evaluation workers' last utilisation snapshot (table `workers`): compile = a job
    in its CPU part, timing = the GPU gate held, gpu-idle = the gate free."""
    t = _compact(Table(title="evaluation workers, last snapshot (times in s)"))
    for col in ("worker", "state", "job", "jobs", "busy%", "compile", "timing", "gpu-idle",
                "idle", "restarts"):
        t.add_column(col, justify="left" if col in ("worker", "state", "job") else "right",
                     no_wrap=col != "job", overflow="fold")
    for w in workers:
        busy, idle = float(w.get("busy_s") or 0.0), float(w.get("idle_s") or 0.0)
        pct = f"{100 * busy / (busy + idle):.0f}" if busy + idle > 0 else "-"
        active = w.get("state") not in ("idle", "stopped", "dead")
        name, gpu = str(w.get("name")), w.get("gpu")
        name += "" if gpu is None or f"gpu{gpu}" in name else f" (gpu {gpu})"
        t.add_row(name, str(w.get("state")), str(w.get("job_id") or "-") if active else "-",
                  str(w.get("jobs_done") or 0), pct, f"{float(w.get('compile_s') or 0):.0f}",
                  f"{float(w.get('timing_s') or 0):.0f}", f"{float(w.get('gpu_idle_s') or 0):.0f}",
                  f"{idle:.0f}", str(w.get("restarts") or 0))
    return t


def shapes_table(shapes: list[dict[str, Any]], title: str = "per shape") -> Table:
    """Per-shape rows of a result (EvalResult.to_dict()["shapes"]); shape = B x Hq/Hkv, head dim,
    sequence length, c = causal."""
    t = _compact(Table(title=f"{title} (B x Hq/Hkv dD S, c = causal)"))
    for col in ("shape", "ms", "base ms", "speedup", "TFLOP/s", "max err", "err ratio"):
        t.add_column(col, justify="left" if col == "shape" else "right", no_wrap=True)
    for m in shapes:
        t.add_row(short_shape(m), _num(m.get("ms")), _num(m.get("baseline_ms")), _num(m.get("speedup")),
                  _num(m.get("tflops"), ".4g"), _num(m.get("error"), ".3g"), _num(m.get("error_ratio"), ".3g"))
    return t


def compile_info_table(items: list[dict[str, Any]]) -> Table:
    """Per Triton specialisation the candidate compiled (EvalResult.to_dict()["compile_info"],
    GPU runs; reported by the sandboxed worker: display only). spec = its constexpr args."""
    t = _compact(Table(title="compiled specialisations (regs per thread, smem per block)"))
    for col in ("kernel", "regs", "spills", "smem KiB", "warps", "stages", "compile s", "spec"):
        t.add_column(col, justify="left" if col in ("kernel", "spec") else "right",
                     no_wrap=col != "spec")
    for c in items:
        smem = c.get("shared")
        comp = _num(c.get("compile_s"), ".2f") + (" (cached)" if c.get("cache_hit") else "")
        t.add_row(escape(str(c.get("kernel"))[:32]), _num(c.get("registers"), "d"),
                  _num(c.get("spills"), "d"), _num(smem / 1024 if smem is not None else None, ".1f"),
                  _num(c.get("num_warps"), "d"), _num(c.get("num_stages"), "d"), comp,
                  escape(str(c.get("spec") or "")))
    return t


def candidate_panel(c: Candidate) -> Panel:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", justify="right")
    t.add_column()
    t.add_row("candidate", f"#{c.id}  ({c.operator})")
    parents = "-" if c.parent_id is None else f"#{c.parent_id}" + (
        f" x #{c.parent2_id}" if c.parent2_id is not None else "")
    t.add_row("parents", parents)
    t.add_row("status", c.status + (f"  score {_num(c.score)}" if c.ok else ""))
    if not c.ok:
        t.add_row("failure", f"{c.failure_class}: {c.failure_message or ''}")
    t.add_row("hypothesis", c.hypothesis)
    if c.unsubmitted:
        t.add_row("unsubmitted", f"the agent never called submit; the session's best state "
                  f"that evaluated ok was kept ({c.unsubmitted})")
    if c.changes:
        t.add_row("changes", json.dumps(c.changes, sort_keys=True))
    t.add_row("evaluation", f"suite {c.suite}, device {c.device}, "
              f"{c.result.get('timing', '?')}, {c.eval_seconds:.1f} s")
    if c.tokens_in or c.cost_usd:
        t.add_row("agent", f"session {c.session_id}, {c.tokens_in}+{c.tokens_out} tokens, "
                  f"${c.cost_usd:.4f}")
    t.add_row("commit", c.commit_sha)
    t.add_row("created", c.created_at)
    return Panel(t, title=f"candidate #{c.id}")


def source_view(source: str) -> Syntax:
    return Syntax(source, "python", line_numbers=True, word_wrap=False)


def diff_view(diff: str) -> Syntax:
    return Syntax(diff or "(no difference)", "diff", word_wrap=False)


def render_result(res: EvalResult, console: Console, recorded: dict[str, float | None] | None = None,
                  recorded_label: str = "recorded ms") -> None:
    """Human-readable table of one evaluation result; `recorded` adds a column of earlier
    times by shape name (`evolve export` shows the run's numbers beside its re-verification)."""
    table = Table(title=f"{res.target} / {res.suite} on {res.device} ({res.timing})")
    cols = ["shape", "ms", "TFLOP/s", f"{res.primary_baseline or 'baseline'} ms", "speedup",
            "max err", "err/torch"] + ([recorded_label] if recorded is not None else [])
    for col in cols:
        table.add_column(col, justify="left" if col == "shape" else "right")
    for s in res.shapes:
        extra = [_num((recorded or {}).get(s.name), ".4g")] if recorded is not None else []
        table.add_row(escape(s.name), _num(s.ms, ".4g"), _num(s.tflops, ".4g"), _num(s.baseline_ms, ".4g"),
                      _num(s.speedup, ".3f"), _num(s.error, ".2e"), _num(s.error_ratio, ".2f"), *extra)
    if res.shapes:
        console.print(table)
    if res.compile_info:
        console.print(compile_info_table([c.to_dict() for c in res.compile_info]))
    if res.profile is not None:
        lines = profile_lines(res.profile.to_dict())
        lines += overlap_lines([c.to_dict() for c in res.compile_info or []])
        console.print("\n".join(lines), markup=False, highlight=False)
    v = res.validation
    if v:
        console.print(f"validation: {v.get('passed')}/{v.get('checked')} checks passed, "
                      f"max error ratio {_num(v.get('max_error_ratio'), '.2f')}")
    if res.repeats:
        console.print(f"repeats: {', '.join(f'{x:.4f}' for x in res.repeats)}  "
                      f"(spread {100 * spread(res.repeats):.2f}%)")
    console.print(f"isolation: {res.env.get('isolation')}   gpu: {res.env.get('gpu')}   "
                  f"wall {res.wall_s:.1f}s")
    if res.ok and res.score is None:
        console.print("[bold green]ok[/] [yellow]no score[/]: no baseline was timed on any shape "
                      "(see the log: each refusal is printed there)")
    elif res.ok:
        console.print(f"[bold green]ok[/] score {res.score:.4f} (geomean speedup over "
                      f"{res.primary_baseline})" + ("" if res.device == "cuda" else
                                                     "  [yellow]NOT GPU performance[/]"))
        if res.unscored:
            console.print(f"[yellow]{len(res.unscored)} of {len(res.shapes)} shapes have no "
                          f"baseline time and are not in the score[/]: "
                          + escape("; ".join(res.unscored)), highlight=False)
    else:
        f = res.failure
        where = escape(f" [{f.shape}]") if f and f.shape else ""
        first = f.message.splitlines()[0] if f and f.message else ""
        console.print(f"[bold red]rejected[/] {f.cls if f else '?'}{where}: {escape(first)}")
