"""`evolve eval FILE --target T` and `evolve targets`.

`eval` runs the isolated evaluator on one candidate file (never importing it here).
Exit codes: 0 ok, 1 rejected, 2 usage error (one line on stderr). `--json` prints
exactly `EvalResult.to_dict()` as JSON on stdout and nothing else there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from evaluator import (EvalOptions, TargetError, UnknownTarget, UsageError, compare_candidates, evaluate,
                       get_target, list_targets)
from evolve.commands import usage_error
from evolve.report import render_result


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        file: Path = typer.Argument(..., help="candidate .py file implementing the target's contract"),
        target: str = typer.Option("gqa", "--target", "-t",
                                   help="target name or target file (see `evolve targets`)"),
        suite: Optional[str] = typer.Option(None, "--suite", "-s",
                                            help="smoke | quick | default (default on a GPU, smoke without)"),
        as_json: bool = typer.Option(False, "--json", help="print the result as JSON only"),
        repeat: int = typer.Option(1, "--repeat", min=1, help="A/A mode: N timing passes, report the spread"),
        timeout: float = typer.Option(600.0, "--timeout", help="wall-clock limit of the worker (s)"),
        baselines: Optional[str] = typer.Option(None, "--baselines", help="comma list of the target's baselines (gqa: cudnn,flash,flex)"),
        gpu: Optional[int] = typer.Option(None, "--gpu", help="GPU index for the worker"),
        against: Optional[Path] = typer.Option(None, "--against",
                                               help="champion file: interleaved comparison instead"),
        seed: Optional[int] = typer.Option(None, "--seed", help="fixed secret seed (debugging only)"),
    ) -> None:
        """Evaluate one candidate kernel in an isolated worker and print the result."""
        if not file.is_file():
            usage_error(f"candidate file not found: {file}")
        if against is not None and not against.is_file():
            usage_error(f"champion file not found: {against}")
        names = tuple(b.strip() for b in baselines.split(",") if b.strip()) if baselines else None
        opts = EvalOptions(timeout_s=timeout, gpu=gpu, repeat=repeat, baselines=names, seed=seed)
        try:
            if against is not None:
                cmp = compare_candidates(file, against, target, suite, opts)
                typer.echo(json.dumps(cmp.to_dict(), indent=2))
                raise typer.Exit(0 if cmp.failure is None else 1)
            res = evaluate(file, target, suite, opts)
        except (UsageError, ValueError) as exc:
            usage_error(str(exc))
        if as_json:
            sys.stdout.write(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
        else:
            render_result(res, Console())
        raise typer.Exit(0 if res.ok else 1)

    @app.command("targets")
    def targets_command(
        which: Optional[str] = typer.Argument(
            None, help="a target name or target file: show its contract, suites and baselines"),
    ) -> None:
        """List the built-in targets, one line each; with a name or a target file, show
        that target: the contract candidates implement, its suites and its baselines.
        A target file is one Python file (format: evaluator/targets/plugin.py);
        --target accepts its path wherever a target is asked for."""
        console = Console(width=80)
        if which is None:
            for t in list_targets():
                console.print(f"{t.name:8s} {t.description}", markup=False, highlight=False)
            return
        try:
            t = get_target(which)
        except (UnknownTarget, TargetError) as exc:
            usage_error(str(exc.args[0]) if isinstance(exc, UnknownTarget) else str(exc))
        console.print(f"{t.name}: {t.description}", markup=False, highlight=False)
        console.print(t.contract, markup=False, highlight=False, soft_wrap=True)
        table = Table(title="suites")
        for col in ("suite", "shapes", "example"):
            table.add_column(col)
        for name, shapes in t.suites.items():
            table.add_row(name, str(len(shapes)), shapes[0].name)
        table.add_row("validation", f"{len(t.gpu_validation)} GPU / {len(t.cpu_validation)} CPU",
                      f"kinds: {', '.join(t.kinds)}")
        console.print(table)
        score = "fastest per shape" if t.score_against == "best" else "first that timed every shape"
        console.print(f"baselines: {', '.join(t.baselines) or 'none'} (score against the {score})",
                      markup=False, highlight=False)
