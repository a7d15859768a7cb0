"""Trusted scoring of Triton attention candidates (public API; see docs/architecture.md).

Importing this package is cheap: torch is imported only by the functions that need it,
and the calling process never initialises CUDA (``gpu_available`` asks a subprocess).
"""

from __future__ import annotations

from evaluator.failures import FAILURE_CLASSES, CandidateFailure
from evaluator.noise import MIN_MARGIN, CompareResult, geomean, spread
from evaluator.ncu import METRICS as NCU_METRICS
from evaluator.profiling import CompileInfo, KernelCounters, KernelTime, ProfileRequest, ProfileResult
from evaluator.prestart import Prestarted, PrestartError, PrestartUnsupported
from evaluator.result import EvalResult, Failure, ShapeResult
from evaluator.runner import EvalOptions, UsageError, compare_candidates, evaluate, gpu_available
from evaluator.targets import Shape, Target, TargetError, UnknownTarget, get_target, list_targets

__all__ = [
    "evaluate", "EvalOptions", "EvalResult", "ShapeResult", "Failure", "FAILURE_CLASSES",
    "get_target", "list_targets", "Target", "Shape", "compare_candidates", "CompareResult",
    "gpu_available", "UsageError", "UnknownTarget", "TargetError", "CandidateFailure",
    "geomean", "spread", "Prestarted", "PrestartError", "PrestartUnsupported", "MIN_MARGIN",
    "CompileInfo", "KernelCounters", "KernelTime", "NCU_METRICS", "ProfileRequest", "ProfileResult",
]
