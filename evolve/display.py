"""Live progress of a run: a rich Live panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table


@dataclass
class ProgressState:
    run_name: str
    target: str
    operator: str
    budget: int | None
    done: int = 0
    best_id: int | None = None
    best_score: float | None = None
    last: str = ""
    last_failure: str = ""
    cost_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)
    in_flight: dict[int, str] = field(default_factory=dict)  # candidate id -> hypothesis
    worker_line: str = ""  # e.g. "local-gpu0 timing cand-12 | local-gpu1 idle"
    model_line: str = ""  # e.g. "model gpt-5.4: ~1200 tokens so far (1:05)"

    def elapsed(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def worker_line(workers: list) -> str:  # noqa: ANN001 - WorkerStatus objects
    parts = []
    for w in workers:
        job = f" {w.job_id}" if w.job_id and w.state not in ("idle", "stopped") else ""
        parts.append(f"{w.name} {w.state}{job}")
    return " | ".join(parts)


PLAIN_ACTIVITY_S = 30.0


class PlainProgress:
    """One line per update: for pipes, logs and tests."""

    def __init__(self, state: ProgressState, console: Console):
        self.state, self.console = state, console
        self._activity_t = time.monotonic()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _line(self, msg: str) -> None:
        """A progress line (the live panel shows the same state itself)."""
        self.console.print(f"[{self.state.elapsed()}] {msg}", highlight=False, markup=False,
                           soft_wrap=True)

    def started(self, cid: int, what: str) -> None:
        self.state.in_flight[cid] = what
        self._line(f"evaluating #{cid}: {what}")

    def workers(self, workers: list) -> None:  # noqa: ANN001 - WorkerStatus objects
        self.state.worker_line = worker_line(workers)

    def finished(self, line: str, failure: str = "", cid: int | None = None) -> None:
        self.state.in_flight.pop(cid, None)
        self.state.last = line
        if failure:
            self.state.last_failure = failure
        s = self.state
        budget = f"/{s.budget}" if s.budget else ""
        self._line(f"{line} | candidates {s.done}{budget} | best #{s.best_id} "
                   f"{_score(s.best_score)}")

    def note(self, msg: str) -> None:
        self._line(msg)

    def activity(self, line: str, urgent: bool = False) -> None:
        """An operator's progress line: kept on the panel; printed when urgent, and in
        plain output at most every PLAIN_ACTIVITY_S."""
        self.state.model_line = line
        now = time.monotonic()
        if urgent or now - self._activity_t >= PLAIN_ACTIVITY_S:
            self._activity_t = now
            self.note(line)


class LiveProgress(PlainProgress):
    """A rich Live panel: candidates / budget, best, in flight, last result and failure."""

    def __init__(self, state: ProgressState, console: Console):
        super().__init__(state, console)
        self.live = Live(self._render(), console=console, refresh_per_second=2,
                         get_renderable=self._render, transient=False)

    def __enter__(self) -> "LiveProgress":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def _render(self) -> Panel:
        s = self.state
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold cyan", justify="right")
        t.add_column()
        budget = f" / {s.budget}" if s.budget else ""
        t.add_row("candidates", f"{s.done}{budget}")
        t.add_row("best", f"#{s.best_id}  score {_score(s.best_score)}" if s.best_id is not None
                  else "-")
        now = ", ".join(f"#{c}" for c in sorted(s.in_flight))
        t.add_row("evaluating", now or "-")
        if s.worker_line:
            t.add_row("workers", s.worker_line)
        if s.model_line:
            t.add_row("model", s.model_line)
        t.add_row("last", s.last or "-")
        t.add_row("last failure", s.last_failure or "-")
        if s.cost_usd:
            t.add_row("cost", f"${s.cost_usd:.4f}")
        t.add_row("elapsed", s.elapsed())
        return Panel(t, title=f"evolve {s.run_name} ({s.target}, {s.operator})",
                     subtitle="Ctrl-C stops; evolve resume continues", border_style="cyan")

    def _line(self, msg: str) -> None:
        pass  # the panel shows it

    def note(self, msg: str) -> None:
        self.live.console.print(msg, highlight=False, markup=False)

    def activity(self, line: str, urgent: bool = False) -> None:
        self.state.model_line = line  # the panel shows it live
        if urgent:
            self.note(line)


def make_progress(state: ProgressState, console: Console | None = None,
                  live: bool | None = None) -> PlainProgress:
    console = console or Console()
    if live is None:
        live = sys.stdout.isatty() and console.is_terminal
    return LiveProgress(state, console) if live else PlainProgress(state, console)
