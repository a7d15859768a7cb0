"""Turn the worker's (untrusted) report and the checker's verdict into an EvalResult.

Everything taken from the worker's report is validated here: failure classes must be
known, timings finite and positive, strings truncated. Plausibility: a throughput above
``PLAUSIBLE_FRACTION`` (90 %) of the card's dense bf16 peak (989 TFLOP/s on H100/H200;
the practical GEMM ceiling measured there is ~770-800) is ``implausible``; the wall-clock
cross check of timing.py gives ``timing_anomaly``.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from evaluator.env_info import peak_tflops
from evaluator.failures import FAILURE_CLASSES, CandidateFailure
from evaluator.noise import geomean
from evaluator.result import ShapeResult
from evaluator.timing import wall_anomaly

PLAUSIBLE_FRACTION = 0.9
_ENV_KEYS = ("gpu", "driver", "cuda", "torch", "triton", "python", "hostname", "sm_count",
             "memory_gib", "capability", "interpreter", "platform")


def reported_failure(report: dict[str, Any]) -> CandidateFailure | None:
    """The ``failure`` record of a worker report or a checker verdict (same format), validated:
    a malformed record or an unknown class (only a forged worker report has one) is ``forbidden``."""
    f = report.get("failure")
    if not f:
        return None
    if not isinstance(f, dict):
        return CandidateFailure("forbidden", "malformed failure record in the worker report")
    cls = str(f.get("class"))
    if cls not in FAILURE_CLASSES:
        return CandidateFailure("forbidden", f"unknown failure class {cls[:40]!r} in the worker report")
    shape = f.get("shape")
    side = f.get("side") if f.get("side") in (0, 1) else None
    return CandidateFailure(cls, str(f.get("message", ""))[:4000], str(shape)[:200] if shape else None,
                            side)


def clean_env(report: dict[str, Any]) -> dict[str, Any]:
    env = report.get("env") if isinstance(report.get("env"), dict) else {}
    out: dict[str, Any] = {}
    for k in _ENV_KEYS:
        v = env.get(k)
        out[k] = v if isinstance(v, (int, float)) or v is None else str(v)[:200]
    return out


def _num(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0:
        return float(x)
    return None


def side_times(report: dict[str, Any], plan: dict[str, Any], side: int) -> dict[int, list[float]]:
    """Per timed shape index: the candidate's per-pass median ms (validated)."""
    out: dict[int, list[float]] = {}
    by_idx = {t.get("idx"): t for t in report.get("timing", []) if isinstance(t, dict)}
    for entry in plan["timed"]:
        rec = by_idx.get(entry["idx"])
        try:
            ms = [_num(x) for x in rec["sides"][side]["ms"]]
        except (KeyError, IndexError, TypeError):
            raise CandidateFailure("forbidden", "timing record missing or malformed") from None
        if len(ms) != plan["passes"] or any(m is None for m in ms):
            raise CandidateFailure("implausible", f"non-positive or missing time {ms}",
                                   entry["name"])
        out[entry["idx"]] = ms  # type: ignore[assignment]
        for w in rec["sides"][side].get("wall", []):
            if isinstance(w, list) and len(w) == 3:
                msg = wall_anomaly(_num(w[0]), _num(w[1]), int(w[2] or 0))
                if msg:
                    raise CandidateFailure("timing_anomaly", msg, entry["name"])
    return out


def covered_baselines(baseline_ms: Any, shapes: list[Any], names: list[str]
                      ) -> dict[int, dict[str, float]] | None:
    """``{timed index: {baseline: ms}}`` from the caller's ``EvalOptions.baseline_ms`` when
    it has a finite positive time of every requested baseline for every timed shape
    (keyed by ``Shape.name``); None for partial coverage (then everything is timed)."""
    if not isinstance(baseline_ms, dict) or not names or not shapes:
        return None
    out: dict[int, dict[str, float]] = {}
    for idx, shape in enumerate(shapes):
        row = baseline_ms.get(shape.name)
        if not isinstance(row, dict):
            return None
        got = {n: _num(row.get(n)) for n in names}
        if any(v is None for v in got.values()):
            return None
        out[idx] = got  # type: ignore[assignment]
    return out


def baseline_times(report: dict[str, Any], plan: dict[str, Any]) -> dict[int, dict[str, list[float | None]]]:
    """Per timed index: ``{baseline: [ms per pass]}``. With cached baselines the numbers come
    from the plan (the parent's own copy), never from the worker's report."""
    out: dict[int, dict[str, list[float | None]]] = {}
    if plan.get("baselines_cached"):
        for entry in plan["timed"]:
            out[entry["idx"]] = {k: [_num(v)] * plan["passes"]
                                 for k, v in entry.get("cached_baselines", {}).items()}
        return out
    for rec in report.get("baselines", []):
        if isinstance(rec, dict) and isinstance(rec.get("times"), dict):
            out[rec.get("idx")] = {str(k): [_num(x) for x in v] for k, v in rec["times"].items()
                                   if isinstance(v, list)}
    return out


def _median(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


BEST = "best"  # pseudo baseline: the fastest baseline of each shape (SCORE_AGAINST = "best")


def pick_primary(base: dict[int, dict[str, list[float | None]]], names: list[str],
                 score_against: str = "first") -> str | None:
    """The first baseline (in the requested order) that has a time for every shape, else
    the one with times for the most shapes; with ``score_against == "best"``: `BEST` when
    some shape has a time of some baseline. A shape without a time of the primary (every
    baseline refused it, e.g. out of memory beside a 32 GiB cache) has no speedup and is
    left out of the score (`EvalResult.unscored`). None: no baseline timed any shape."""
    if not base:
        return None
    if score_against == BEST:
        ok = any(_median(v) is not None for b in base.values() for v in b.values())
        return BEST if ok else None
    cover = {name: sum(_median(b.get(name, [])) is not None for b in base.values()) for name in names}
    most = max(names, key=lambda n: cover[n], default=None)  # the first of the most covered
    return most if most is not None and cover[most] else None


def _best(b: dict[str, list[float | None]]) -> list[float | None]:
    """Per pass, the fastest baseline's time."""
    n = max((len(v) for v in b.values()), default=0)
    out: list[float | None] = []
    for p in range(n):
        xs = [v[p] for v in b.values() if p < len(v) and v[p]]
        out.append(min(xs) if xs else None)
    return out


def build_shapes(target: Any, plan: dict[str, Any], cand: dict[int, list[float]],
                 base: dict[int, dict[str, list[float | None]]], primary: str | None,
                 errors: dict[str, dict[str, float]], gpu_name: str | None,
                 device: str) -> tuple[list[ShapeResult], list[float]]:
    """ShapeResults plus the per-pass scores; raises ``implausible`` beyond the peak bound."""
    shapes: list[ShapeResult] = []
    per_pass: list[list[float]] = [[] for _ in range(plan["passes"])]
    bound = PLAUSIBLE_FRACTION * peak_tflops(gpu_name)
    for entry in plan["timed"]:
        shape = target.shape(entry["shape"])
        ms_list = cand[entry["idx"]]
        ms = statistics.median(ms_list)
        flops = target.flops(shape)
        tflops = flops / (ms * 1e-3) / 1e12 if flops else None
        if device == "cuda" and tflops is not None and tflops > bound:
            raise CandidateFailure("implausible", f"{tflops:.0f} TFLOP/s exceeds {bound:.0f} "
                                   f"(90% of the card's dense bf16 peak)", shape.name)
        b = base.get(entry["idx"], {})
        bmed = {k: _median(v) for k, v in b.items()}
        if primary == BEST:
            b = {**b, BEST: _best(b)}
            bms = min((v for v in bmed.values() if v is not None), default=None)
        else:
            bms = bmed.get(primary) if primary else None
        err = errors.get(str(entry["idx"]), {})
        shapes.append(ShapeResult(
            name=shape.name, B=getattr(shape, "B", 0), Hq=getattr(shape, "Hq", 0),
            Hkv=getattr(shape, "Hkv", 0), S=getattr(shape, "S", 0), D=getattr(shape, "D", 0),
            causal=bool(getattr(shape, "causal", False)), dtype=shape.dtype, ms=ms, tflops=tflops, baseline_ms=bms,
            speedup=(bms / ms) if bms else None, error=err.get("error"),
            error_ratio=err.get("error_ratio"),
            baselines={k: v for k, v in bmed.items() if v is not None}))
        if primary:
            for p, m in enumerate(ms_list):
                bp = b.get(primary, [None] * len(ms_list))
                if p < len(bp) and bp[p]:
                    per_pass[p].append(bp[p] / m)
    return shapes, [g for g in (geomean(x) for x in per_pass) if g is not None]
