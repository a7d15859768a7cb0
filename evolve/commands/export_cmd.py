"""`evolve export RUN [--candidate ID] --out PATH.py`: a standalone, re-verified module."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from evolve.export import ExportError, ExportFailed, VerificationFailed, export_candidate
from evolve.export_meta import ExportMeta
from evolve.paths import DEFAULT_RUNS_DIR
from evolve.report import render_result


def export(
    run: str = typer.Argument(..., help="run name (under --runs-dir) or path"),
    out: Path = typer.Option(..., "--out", "-o", help="module to write (a .py file)"),
    candidate: Optional[int] = typer.Option(None, "--candidate", "-c",
                                            help="candidate id (default: the run's best)"),
    runs_dir: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="directory holding run directories"),
    suite: Optional[str] = typer.Option(None, help="suite for the re-verification "
                                        "(default: default on a GPU, smoke on the CPU interpreter)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --out file"),
    timeout: float = typer.Option(600.0, help="re-verification timeout in seconds"),
) -> None:
    """Export the best (or a chosen) candidate as a module needing only torch and triton,
    then re-verify the written file through the evaluator in a fresh process."""
    def written(path: Path, meta: ExportMeta) -> None:
        typer.echo(f"wrote {path} (run {meta.run}, candidate {meta.candidate.id}, depth "
                   f"{meta.candidate.depth}); re-verifying it through the evaluator ...")

    try:
        report = export_candidate(run, out, runs_dir=runs_dir, candidate_id=candidate, suite=suite,
                                  force=force, timeout_s=timeout, on_written=written)
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        if isinstance(exc, VerificationFailed) and exc.result.log_tail:
            typer.echo(exc.result.log_tail[-2000:], err=True)
        raise typer.Exit(1 if isinstance(exc, ExportFailed) else 2)
    v, stored = report.verification, report.meta.result
    render_result(v, Console(width=120), {s.name: s.ms for s in stored.shapes},
           "recorded ms" if stored.device == v.device else "recorded ms (other device)")
    score = f"{v.score:.4f}" if v.score is not None else "n/a"
    typer.echo(f"re-verified: {v.validation.get('passed')}/{v.validation.get('checked')} validation "
               f"checks passed, score {score} ({v.primary_baseline}); "
               f"try: python {report.out} --selftest")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
