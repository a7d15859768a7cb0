"""Profiling records of one evaluation: per-specialisation compile info and the profile of
one named shape, as `EvalResult` carries them (GPU only; display, never scoring).

Both come from the worker's report (profile_stage.py collects them), i.e. from a process
that ran candidate code: ``from_report`` validates them like any candidate-controlled data
-- known keys only, types checked, numbers finite and bounded, strings truncated, at most
``MAX_KERNELS`` compile records and ``MAX_PROFILE_KERNELS`` kernel rows. A malformed entry
is dropped, never an error: a forged record only misleads the candidate's own author.

A profile is asked for with ``EvalOptions.profile = ProfileRequest(shape)``: the shape
must be one of the evaluated suite's shapes; on the interpreter the result's profile says
that there is no GPU (``NO_GPU``) and the evaluation is otherwise the same.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluator.ncu import METRICS

MAX_KERNELS = 64
MAX_PROFILE_KERNELS = 12
MAX_TEXT = 200
MAX_NOTE = 600
NO_GPU = ("no CUDA GPU here: the CPU interpreter compiles no kernels and measures no GPU "
          "time, so there is no compile info or profile to report")


def _int(x: Any, hi: int = 10**7) -> int | None:
    if isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= hi:
        return x
    return None


def _float(x: Any, hi: float = 1e7) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= hi:
        return float(x)
    return None


def _text(x: Any, limit: int = MAX_TEXT) -> str:
    return "".join(c if c.isprintable() else " " for c in str(x)[:limit]) if x is not None else ""


@dataclass
class CompileInfo:
    """One compiled Triton specialisation (``CompiledKernel`` metadata): ``shared`` in
    bytes, ``compile_s`` the compile's own time (None: not seen compiling), ``spec`` its
    constexpr arguments (``BLOCK_M=128 BLOCK_N=64``)."""

    kernel: str
    spec: str = ""
    registers: int | None = None
    spills: int | None = None
    shared: int | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    compile_s: float | None = None
    cache_hit: bool = False
    ex2_in_flight: int | None = None  # with a profile: evaluator/sass.py (None: not known)
    f2fp_in_flight: int | None = None  # the same for the conversions of P to 16 bits

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "CompileInfo | None":
        if not isinstance(d, dict) or not isinstance(d.get("kernel"), str) or not d["kernel"]:
            return None
        return cls(kernel=_text(d["kernel"], 120), spec=_text(d.get("spec")),
                   registers=_int(d.get("registers"), 65536), spills=_int(d.get("spills")),
                   shared=_int(d.get("shared"), 1 << 24), num_warps=_int(d.get("num_warps"), 64),
                   num_stages=_int(d.get("num_stages"), 64),
                   compile_s=_float(d.get("compile_s"), 86400.0),
                   cache_hit=d.get("cache_hit") is True,
                   ex2_in_flight=_int(d.get("ex2_in_flight"), 1 << 20),
                   f2fp_in_flight=_int(d.get("f2fp_in_flight"), 1 << 20))


@dataclass
class ProfileRequest:
    """Profile one shape (``Shape.name``) of the evaluated suite: ``calls`` calls timed with
    CUDA events, then the GPU kernels of a few more listed by torch's profiler (CUPTI);
    ``counters``: also hardware counters of one call from Nsight Compute where ``ncu`` is
    installed (evaluator/ncu.py: a sandboxed profile process of its own, after the
    worker)."""

    shape: str
    calls: int = 20
    counters: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileRequest":
        return cls(shape=str(d["shape"]), calls=max(1, min(200, int(d.get("calls", 20)))),
                   counters=d.get("counters") is True)


@dataclass
class KernelTime:
    """One GPU kernel seen by the profiler: launches per attention call, mean time of one."""

    name: str
    calls: int
    mean_us: float

    @classmethod
    def from_dict(cls, d: Any) -> "KernelTime | None":
        if not isinstance(d, dict):
            return None
        calls, mean = _int(d.get("calls"), 10**6), _float(d.get("mean_us"), 1e9)
        if calls is None or mean is None or not d.get("name"):
            return None
        return cls(_text(d["name"], 120), calls, mean)


@dataclass
class KernelCounters:
    """One kernel's Nsight Compute counters (``metrics``: metric name of
    ``evaluator.ncu.METRICS`` -> value in the unit named there)."""

    name: str
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any) -> "KernelCounters | None":
        if not isinstance(d, dict) or not d.get("name") or not isinstance(d.get("metrics"), dict):
            return None
        metrics = {k: v for k, v in ((k, _float(d["metrics"].get(k), 1e9)) for k in METRICS)
                   if v is not None}
        return cls(_text(d["name"], 120), metrics) if metrics else None


@dataclass
class ProfileResult:
    """The profile of one shape. ``ms``: the evaluation's own timing of the shape (the
    trusted, validated number); ``event_ms``: the median of the profile's CUDA-event
    timed calls (warm L2); ``kernels``: per kernel, from the profiler; ``counters``: per
    kernel, from Nsight Compute; ``tool``: what measured them; ``note``: what was not
    available and why."""

    shape: str
    available: bool = False
    tool: str = ""
    ms: float | None = None
    event_ms: float | None = None
    kernels: list[KernelTime] = field(default_factory=list)
    counters: list[KernelCounters] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_counters(self, kernels: list[Any], note: str) -> None:
        """Nsight Compute's kernel records (validated here: the profiled child ran candidate
        code) and its note on what failed."""
        self.counters = [c for c in (KernelCounters.from_dict(x)
                                     for x in kernels[:MAX_PROFILE_KERNELS]) if c]
        if self.counters:
            self.tool = _text(f"{self.tool} + Nsight Compute".lstrip(" +"), 80)
        if note:
            self.note = _text(f"{self.note} {note}".strip(), MAX_NOTE)

    @classmethod
    def from_dict(cls, d: Any) -> "ProfileResult | None":
        if not isinstance(d, dict) or not d.get("shape"):
            return None
        kernels = d.get("kernels") if isinstance(d.get("kernels"), list) else []
        counters = d.get("counters") if isinstance(d.get("counters"), list) else []
        return cls(shape=_text(d["shape"]), available=d.get("available") is True,
                   tool=_text(d.get("tool"), 80), ms=_float(d.get("ms")),
                   event_ms=_float(d.get("event_ms")),
                   kernels=[k for k in (KernelTime.from_dict(x)
                                        for x in kernels[:MAX_PROFILE_KERNELS]) if k],
                   counters=[c for c in (KernelCounters.from_dict(x)
                                         for x in counters[:MAX_PROFILE_KERNELS]) if c],
                   note=_text(d.get("note"), MAX_NOTE))


def compile_info_from(raw: Any) -> list[CompileInfo]:
    """Validated compile records of a worker report's (or a stored result's) list."""
    if not isinstance(raw, list):
        return []
    return [c for c in (CompileInfo.from_dict(x) for x in raw[:MAX_KERNELS]) if c]


def profile_from_report(report: dict[str, Any], request: ProfileRequest,
                        ms: float | None) -> ProfileResult:
    """The worker's profile record, validated, for ``request``; ``ms`` is the trusted time of
    the shape from this evaluation. A missing record says so in ``note``."""
    got = ProfileResult.from_dict(report.get("profile"))
    if got is None or got.shape != request.shape:
        return ProfileResult(request.shape, ms=ms, note="the worker reported no profile "
                             "(the evaluation stopped before the profile stage)")
    got.ms = ms
    return got
