"""`evolve export`: turn an accepted candidate into a standalone module (torch + triton
only), then re-verify the written file through the evaluator in a fresh process.

The module is trusted output of an already-checked candidate, so the re-verification
skips only the evaluator's static check (the wrapper legitimately uses SDPA for its
fallback and torch.library for the custom op); the runtime guard, the validation
shapes and the trusted checker all apply as for any candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from evaluator import EvalOptions, EvalResult, UsageError, evaluate, gpu_available
from evolve.export_load import ExportError, load_candidate
from evolve.export_meta import ExportMeta
from evolve.export_rename import RenameError
from evolve.export_render import render_module

__all__ = ["ExportError", "ExportReport", "VerificationFailed", "export_candidate", "write_module"]


class VerificationFailed(ExportError):
    """The written module failed the evaluator's re-verification (the file was removed)."""

    def __init__(self, message: str, result: EvalResult | None):
        super().__init__(message, code=1)
        self.result = result


@dataclass
class ExportReport:
    out: Path
    meta: ExportMeta
    verification: EvalResult


def write_module(source: str, meta: ExportMeta, out: Path, *, force: bool = False) -> Path:
    """Render and write the module (no verification). Refuses to overwrite unless `force`."""
    out = Path(out)
    if out.suffix != ".py":
        raise ExportError(f"--out must name a .py file, got {out}")
    if not out.parent.is_dir():
        raise ExportError(f"directory {out.parent} does not exist")
    if out.exists() and not force:
        raise ExportError(f"{out} already exists (pass --force to overwrite it)")
    try:
        text = render_module(source, meta)
    except RenameError as exc:
        raise ExportError(f"cannot embed candidate {meta.candidate_id}: {exc}", code=1) from None
    out.write_text(text, encoding="utf-8")
    return out


def verify_module(out: Path, target: str, suite: str | None, timeout_s: float,
                  log_path: Path | None = None) -> EvalResult:
    """Evaluate the written module like a candidate, static check skipped (see module doc)."""
    gpu = gpu_available()
    options = EvalOptions(timeout_s=timeout_s, static_check=False, log_path=log_path,
                          baselines=("cudnn",) if gpu else None)
    return evaluate(out, target, suite or ("default" if gpu else "smoke"), options)


def export_candidate(run: str | Path, out: Path, *, runs_dir: Path = Path("runs"),
                     candidate_id: int | None = None, suite: str | None = None,
                     force: bool = False, timeout_s: float = 600.0,
                     on_written: Callable[[Path, ExportMeta], None] | None = None) -> ExportReport:
    """Export one candidate (default: the run's best) to `out` and re-verify it.

    On any failure after the file was written, that file (and nothing else) is removed
    and `ExportError`/`VerificationFailed` is raised."""
    out = Path(out)
    verify_device = "cuda" if gpu_available() else "interpreter"
    loaded = load_candidate(run, runs_dir, candidate_id, verify_device)
    write_module(loaded.source, loaded.meta, out, force=force)
    if on_written is not None:
        on_written(out, loaded.meta)
    try:
        result = verify_module(out, loaded.meta.target, suite, timeout_s)
    except UsageError as exc:
        out.unlink(missing_ok=True)
        raise ExportError(f"re-verification not possible: {exc}; the file was removed") from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if not result.ok:
        out.unlink(missing_ok=True)
        f = result.failure
        why = f"{f.cls}: {f.message}" + (f" [{f.shape}]" if f.shape else "") if f else "unknown failure"
        raise VerificationFailed(f"re-verification of {out} failed ({why}); the file was removed",
                                 result)
    return ExportReport(out=out, meta=loaded.meta, verification=result)
