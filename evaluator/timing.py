"""Timing of one callable on one shape, inside the worker.

GPU (``cuda-events``): for every call fresh inputs (new values from a per-call seed, the
input kind drawn per call as well -- see ``plan.timed_kind`` --, new storage; the last
``rotate`` sets stay alive so addresses rotate too), an L2 flush
(writing a 256 MB buffer, > 2x the 50 MB L2 of H100/H200) before every timed call,
``warmup`` calls excluded, then ``rounds`` x ``calls`` timed calls with per-call CUDA
events; the result is the median. A wall-clock cross check follows: ``wall_calls``
back-to-back calls are timed both with events and with the host clock around a
device-wide synchronize. Work hidden on another stream or thread is invisible to the
events but not to the wall clock; the runner flags ``timing_anomaly`` when
``wall > WALL_FACTOR * events + WALL_SLACK_MS * n``.

CPU interpreter (``cpu-interpreter-wallclock``): host ``perf_counter`` per call, fresh
inputs, fixed counts. These numbers are NOT GPU performance.

Selected timed calls (chosen by the secret seed in the plan) keep a sample of output
rows, which the trusted checker compares with the reference afterwards.

Targets with shared inputs (a decode KV cache of up to 32 GiB; evaluator/timed_inputs.py):
``make(n)`` returns fresh small inputs around the same large tensors, so rotation keeps
only the small ones alive; ``settle`` runs after every call (once its output is sampled;
after the wall-clock check's calls, once for all) and undoes the slices the call planted
in the shared tensors. Stream order puts it after the call's kernels, outside the events.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

WALL_FACTOR = 1.5
WALL_SLACK_MS = 0.3
FLUSH_BYTES = 256 * 1024 * 1024


@dataclass
class TimingParams:
    warmup: int = 3
    rounds: int = 5
    calls: int = 5
    rotate: int = 3
    wall_calls: int = 5

    @classmethod
    def for_device(cls, device: str) -> "TimingParams":
        if device == "cuda":
            return cls()
        return cls(warmup=1, rounds=1, calls=3, rotate=2, wall_calls=0)


@dataclass
class TimingRecord:
    ms: float  # median of the timed calls
    wall_ms: float | None = None
    wall_event_ms: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"call", "tensor"}


class BadOutput(Exception):
    """A timed call returned something that is not a plain tensor of the right shape."""


def _check_out(out, expect: tuple[int, ...] | None, call) -> None:
    import torch

    want = tuple(expect) if expect is not None else tuple(call.args[0].shape)
    if type(out) is not torch.Tensor or tuple(out.shape) != want:
        raise BadOutput(f"timed call returned {type(out).__name__} "
                        f"{tuple(getattr(out, 'shape', ()))}, expected Tensor {want}")


def time_call(fn: Callable, make: Callable[[int], Any], *, params: TimingParams, device: str,
              expect: tuple[int, ...] | None = None, sample: dict[int, list[int]] | None = None,
              check: bool = True, after_call: Callable[[], None] | None = None,
              causal: bool | None = None, kwargs: dict | None = None,
              settle: Callable[[], None] | None = None) -> TimingRecord:
    """Time ``fn(*call.args, **call.kwargs)``; ``make(n)`` returns call n's fresh inputs: a
    target's `Call`, or (older scripts) a ``(q, k, v)`` tuple called with ``causal`` and
    ``kwargs``. ``expect``: the output's shape (default: the first argument's).
    ``settle``: called after each call (shared inputs: undo its planted slices)."""
    run = _time_cuda if device == "cuda" else _time_cpu

    def make_call(n: int) -> Any:
        c = make(n)
        if isinstance(c, tuple):
            return _Legacy(c, {"causal": bool(causal), **(kwargs or {})})
        return c

    return run(fn, make_call, expect, params, sample or {}, check, after_call, settle)


@dataclass
class _Legacy:
    """A ``(q, k, v)`` tuple from an older script, shaped like a target's Call."""

    args: tuple
    kwargs: dict


def _take_sample(out, rows: list[int]):
    import torch

    idx = torch.as_tensor(rows, device=out.device)
    return torch.Tensor.index_select(out, 2, idx).clone()


def _warm_up(fn, make, expect, p, check, after_call, settle) -> None:
    for i in range(p.warmup):
        c = make(-1 - i)
        out = fn(*c.args, **c.kwargs)
        if check:
            _check_out(out, expect, c)
        if after_call:
            after_call()
        if settle:
            settle()


def _time_cpu(fn, make, expect, p, sample, check, after_call, settle) -> TimingRecord:
    _warm_up(fn, make, expect, p, check, after_call, settle)
    times, samples, keep = [], [], []
    for n in range(p.rounds * p.calls):
        c = make(n)
        keep = (keep + [c])[-p.rotate:]
        t0 = time.perf_counter()
        out = fn(*c.args, **c.kwargs)
        times.append((time.perf_counter() - t0) * 1e3)
        if check:
            _check_out(out, expect, c)
        if after_call:
            after_call()
        if n in sample:
            samples.append({"call": n, "tensor": _take_sample(out, sample[n])})
        if settle:
            settle()
    return TimingRecord(ms=statistics.median(times), samples=samples)


def _time_cuda(fn, make, expect, p, sample, check, after_call, settle) -> TimingRecord:
    import torch

    flush_buf = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    _warm_up(fn, make, expect, p, check, after_call, settle)
    torch.cuda.synchronize()
    times: list[float] = []
    samples: list[dict[str, Any]] = []
    keep: list[tuple] = []
    n = 0
    for _ in range(p.rounds):
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(p.calls)]
        pending = []
        for e0, e1 in events:
            c = make(n)
            keep = (keep + [c])[-p.rotate:]
            flush_buf.zero_()
            e0.record()
            out = fn(*c.args, **c.kwargs)
            e1.record()
            if check:
                _check_out(out, expect, c)
            if n in sample:
                pending.append((n, _take_sample(out, sample[n])))
            del out
            if settle:
                settle()
            n += 1
        torch.cuda.synchronize()
        if after_call:
            after_call()
        times += [e0.elapsed_time(e1) for e0, e1 in events]
        samples += [{"call": c, "tensor": t.cpu()} for c, t in pending]
    rec = TimingRecord(ms=statistics.median(times), samples=samples)
    if p.wall_calls:
        sets = [make(10_000 + j) for j in range(p.wall_calls)]
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in sets]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for c, (e0, e1) in zip(sets, events):
            e0.record()
            fn(*c.args, **c.kwargs)
            e1.record()
        torch.cuda.synchronize()
        rec.wall_ms = (time.perf_counter() - t0) * 1e3
        rec.wall_event_ms = sum(e0.elapsed_time(e1) for e0, e1 in events)
        del sets
        if settle:
            settle()
    del flush_buf
    return rec


def wall_anomaly(wall_ms: float | None, event_ms: float | None, n: int) -> str | None:
    """Message when the wall clock shows much more time than the events (hidden work)."""
    if wall_ms is None or event_ms is None or n == 0:
        return None
    if wall_ms > WALL_FACTOR * event_ms + WALL_SLACK_MS * n:
        return (f"wall clock {wall_ms:.3f} ms for {n} calls but CUDA events saw {event_ms:.3f} ms: "
                "work hidden from the timing stream (side stream or thread)")
    return None
