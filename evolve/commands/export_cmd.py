"""`evolve export RUN [--candidate ID] --out PATH.py`: a standalone, re-verified module."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from evolve.export import ExportError, ExportReport, VerificationFailed, export_candidate
from evolve.export_meta import ExportMeta
from evolve.paths import DEFAULT_RUNS_DIR


def _numbers_table(report: ExportReport) -> Table:
    """Re-verification numbers beside the ones recorded for the candidate."""
    res, meta = report.verification, report.meta
    same_device = res.device == meta.device
    recorded = {(s.B, s.Hq, s.Hkv, s.S, s.D, s.causal, s.dtype): s for s in meta.shapes}
    t = Table(title=f"re-verification ({res.suite}, {res.device}; {res.timing})")
    for col in ("shape", "ms", "TFLOP/s", f"{res.primary_baseline or 'baseline'} ms", "speedup",
                "recorded ms" if same_device else "recorded ms (other device)"):
        t.add_column(col, justify="left" if col == "shape" else "right")
    fmt = lambda x, spec: format(x, spec) if isinstance(x, (int, float)) else "-"  # noqa: E731
    for s in res.shapes:
        rec = recorded.get((s.B, s.Hq, s.Hkv, s.S, s.D, s.causal, s.dtype))
        label = f"B{s.B} H{s.Hq}/{s.Hkv} S{s.S} D{s.D}{' causal' if s.causal else ''} {s.dtype}"
        t.add_row(label, fmt(s.ms, ".4f"), fmt(s.tflops, ".3g"), fmt(s.baseline_ms, ".4f"),
                  fmt(s.speedup, ".3f"), fmt(rec.ms if rec else None, ".4f"))
    return t


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
        typer.echo(f"wrote {path} (run {meta.run}, candidate {meta.candidate_id}, depth {meta.depth}); "
                   "re-verifying it through the evaluator ...")

    try:
        report = export_candidate(run, out, runs_dir=runs_dir, candidate_id=candidate, suite=suite,
                                  force=force, timeout_s=timeout, on_written=written)
    except VerificationFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        if exc.result is not None and exc.result.log_tail:
            typer.echo(exc.result.log_tail[-2000:], err=True)
        raise typer.Exit(exc.code)
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code)
    v = report.verification
    Console(width=120).print(_numbers_table(report))
    score = f"{v.score:.4f}" if v.score is not None else "n/a"
    typer.echo(f"re-verified: {v.validation.get('passed')}/{v.validation.get('checked')} validation "
               f"checks passed, score {score} ({v.primary_baseline}); "
               f"try: python {report.out} --selftest")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
