"""`evolve bench FILE... --target T [--suite default] [--out DIR] [--rounds 3] [--blocked]`.

Runs benchmarks/compare.py in a child process: in ONE process on the current GPU it
times the given kernel files and every available peer (SDPA-cuDNN, SDPA-flash,
FlexAttention) on the target's suite with the evaluator's timing protocol, prints a
table (TFLOP/s per shape, ratio to cuDNN, geometric means) and writes JSON + an SVG
plot under benchmarks/results/ (or --out). Needs a CUDA GPU: without one it exits 2
with a one-line message. The kernel files are trusted user files (imported, not
sandboxed); use `evolve eval` for untrusted candidates.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer

from evolve.commands import usage_error

REPO = Path(__file__).resolve().parents[2]
COMPARE = REPO / "benchmarks" / "compare.py"


def bench(
    files: List[Path] = typer.Argument(..., help="kernel files defining attention(q, k, v, ...)"),
    target: str = typer.Option("gqa", "--target", "-t",
                               help="target name or target file (evolve targets)"),
    suite: str = typer.Option("default", "--suite", help="suite of the target"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for JSON + SVG "
                                       "(default: benchmarks/results/)"),
    peers: Optional[str] = typer.Option(None, "--peers", help="peers to time, comma separated "
                                        "(default: the target's baselines; gqa: cudnn,flash,flex)"),
    rounds: int = typer.Option(3, "--rounds", min=1, help="timing rounds per shape: every "
                               "contestant is timed once per round, in rotated order, and "
                               "keeps the median (clock drift hits all of them alike)"),
    blocked: bool = typer.Option(False, "--blocked", help="time contestant by contestant "
                                 "instead (the old order; biased against later contestants)"),
) -> None:
    """Time kernels beside the target's baselines (gqa: SDPA-cuDNN, SDPA-flash and
    FlexAttention) on this GPU."""
    from evaluator import TargetError, UnknownTarget, get_target, gpu_available

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        usage_error(f"kernel file not found: {', '.join(missing)}")
    try:
        tgt = get_target(target)
    except UnknownTarget as exc:
        usage_error(str(exc.args[0]))
    except TargetError as exc:
        usage_error(str(exc))
    if suite not in tgt.suites:
        usage_error(f"target {target} has no suite {suite!r} (known: {', '.join(tgt.suites)})")
    if not COMPARE.is_file():
        usage_error(f"benchmarks/compare.py not found next to the package ({COMPARE}); "
               "run from a source checkout")
    if not gpu_available():
        usage_error("evolve bench needs a CUDA GPU (none found); use `evolve eval` on CPU")
    cmd = [sys.executable, str(COMPARE), *[str(f.resolve()) for f in files],
           "--target", target, "--suite", suite, "--rounds", str(rounds)]
    if peers:
        cmd += ["--peers", peers]
    if blocked:
        cmd.append("--blocked")
    if out is not None:
        cmd += ["--out", str(out.resolve())]
    raise typer.Exit(subprocess.call(cmd))


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
