"""Rendering of runs for `evolve status / best / show` (rich; plain text off a terminal)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from evolve import read
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


def elapsed_s(run: RunHandle) -> float:
    """Wall time from the run's creation to its latest activity (now, while a live loop runs):
    the same rule as the dashboard's (evolve.read.summarize)."""
    try:
        return read.summarize(read.read_snapshot(run.paths.root)).elapsed_s or 0.0
    except read.RunNotReady:
        return 0.0


def fmt_elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _num(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def run_label(run: RunHandle) -> str:
    """The run's folder (what `evolve status/best/show RUN` takes), the stored name beside it."""
    folder, stored = run.paths.root.name, run.store.run().name
    return folder if stored == folder else f"{folder} ({stored})"


def runs_table(runs: list[RunHandle]) -> Table:
    t = _compact(Table(title="runs", show_lines=False))
    for col in ("run", "target", "operator", "status", "candidates", "best", "best score",
                "elapsed"):
        t.add_column(col, justify="right" if col in ("candidates", "best score") else "left")
    for run in runs:
        rec = run.store.run()
        best = run.store.best()
        t.add_row(run_label(run), rec.target, rec.operator, run.effective_status(),
                  str(run.store.counts()["total"]), f"#{best.id}" if best else "-",
                  _num(best.score if best else None), fmt_elapsed(elapsed_s(run)))
    return t


def run_summary(run: RunHandle) -> Group:
    rec = run.store.run()
    counts = run.store.counts()
    best = run.store.best()
    totals = run.store.totals()
    fp = run.fingerprint
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", justify="right")
    t.add_column()
    t.add_row("run", f"{run_label(run)}  {run.paths.root}")
    t.add_row("target / suite", f"{rec.target} / {rec.suite}")
    t.add_row("operator", rec.operator + (f" ({rec.model})" if rec.model else ""))
    cfg = run.config
    t.add_row("scale-out", f"{cfg.proposers} proposer(s), {cfg.executor} executor"
              + (f" at {cfg.ray_address}" if cfg.ray_address else "") + ", GPUs "
              + ("all" if cfg.gpus is None else ",".join(map(str, cfg.gpus)))
              + ("" if cfg.gpu else " (none here: one interpreter worker)"))
    t.add_row("status", run.effective_status())
    t.add_row("created", rec.created_at)
    t.add_row("elapsed", fmt_elapsed(elapsed_s(run)))
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(counts["by_status"].items())) or "none"
    t.add_row("candidates", f"{counts['total']} ({by_status})")
    if counts["by_class"]:
        t.add_row("failures", ", ".join(f"{k} {v}" for k, v in counts["by_class"].items()))
    t.add_row("best", f"#{best.id} score {_num(best.score)}" if best else "-")
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
    """The evaluation workers' last utilisation snapshot (table `workers`)."""
    t = _compact(Table(title="evaluation workers, last snapshot (times in s)"))
    for col in ("worker", "state", "job", "jobs", "busy%", "compile", "timing", "idle", "restarts"):
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
                  f"{float(w.get('timing_s') or 0):.0f}", f"{idle:.0f}", str(w.get("restarts") or 0))
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
    changes = c.changes
    if changes:
        t.add_row("changes", json.dumps(changes, sort_keys=True))
    result = c.result
    t.add_row("evaluation", f"suite {c.suite}, device {c.device}, "
              f"{result.get('timing', '?')}, {c.eval_seconds:.1f} s")
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
