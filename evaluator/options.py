"""``EvalOptions`` (see docs/architecture.md) and ``UsageError``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from evaluator.profiling import ProfileRequest

MAX_COMPILE_THREADS = 8


@dataclass
class EvalOptions:
    """Options of one evaluation (see docs/architecture.md). ``timeout_s`` counts from the
    moment the candidate is imported (baselines are timed before, on their own allowance).
    A given ``scratch_dir`` is kept, but everything the evaluation put into it is removed.

    ``baseline_ms``: ``{shape name: {baseline name: ms}}`` measured earlier on this GPU by
    trusted code; when it covers every timed shape for the requested baselines the worker
    times no baseline and the result has ``baselines_cached`` (``evaluate`` only).
    ``compile_threads``: threads of the GPU precompile stage (None: min(8, CPUs); 0: off).
    ``on_stage``: called in the calling process with each stage name as the evaluation
    proceeds (exceptions swallowed).
    ``profile``: a ``ProfileRequest`` for one shape of the suite (profiling.py): GPU: the
    worker profiles it after timing, the result's ``profile`` has it; interpreter: the
    result's profile says there is no GPU (``evaluate`` only).
    ``prestarted``: a ``prestart.Prestarted`` handle; used when live and started for this
    evaluation's GPU / interpreter setting and no ``scratch_dir`` is given, else a fresh
    worker is spawned; consumed (closed) either way.
    """

    timeout_s: float = 600.0
    scratch_dir: Path | None = None
    gpu: int | None = None
    repeat: int = 1
    baselines: tuple[str, ...] | None = None
    log_path: Path | None = None
    seed: int | None = None
    static_check: bool = True  # tests only: exercise runtime classes the static check would catch
    checker_timeout_s: float = 900.0
    baseline_ms: dict[str, dict[str, float]] | None = None
    compile_threads: int | None = None
    profile: ProfileRequest | None = None
    on_stage: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    prestarted: Any = field(default=None, repr=False, compare=False)  # prestart.Prestarted

    def resolved_compile_threads(self) -> int:
        if self.compile_threads is not None:
            return max(0, int(self.compile_threads))
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return max(1, min(MAX_COMPILE_THREADS, cpus))


class UsageError(ValueError):
    """Bad arguments (missing file, unknown target/suite, GPU suite without GPU)."""
