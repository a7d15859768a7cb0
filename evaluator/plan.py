"""The evaluation plan: which checks, which timed shapes, which samples -- all from the seed.

The parent builds the plan once. The worker receives it (it has to generate the same
inputs), and the trusted checker receives the parent's own copy, so nothing the worker
writes can change what is checked.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

from evaluator.inputs import derive_seed
from evaluator.targets import Target
from evaluator.timing import TimingParams

SAMPLE_ROWS = 8
SAMPLES_PER_SHAPE = 2
MAX_SPECIALISATIONS = 256
PRECOMPILE_LIMIT_S = 120.0


def check_kinds(kinds: tuple[str, ...], device: str, suite: str, i: int) -> list[str]:
    """Input kinds (the target's; the first is the plain one) checked on validation shape
    ``i``: GPU every kind (``quick``: the plain one plus one adversarial kind, cycling),
    interpreter one kind per shape, cycling in the target's order."""
    plain, adv = kinds[0], list(kinds[1:])
    if device != "cuda":
        return [kinds[i % len(kinds)]]
    if suite == "quick" and adv:
        return [plain, adv[i % len(adv)]]
    return list(kinds)


def build_plan(target: Target, suite: str, *, device: str, seed: int, baselines: list[str],
               repeat: int = 1, rounds: int | None = None,
               cached_baselines: dict[int, dict[str, float]] | None = None,
               compile_threads: int = 0) -> dict[str, Any]:
    """The plan. ``cached_baselines`` ({timed index: {baseline: ms}}, trusted numbers from
    the caller) replaces the worker's baseline timing: the worker gets no baselines to time
    and the parent's copy of the plan carries the numbers (assemble.baseline_times).
    ``compile_threads`` > 0 turns the worker's GPU precompile stage on (precompile.py)."""
    rng = random.Random(derive_seed(seed, "plan"))
    checks = []
    for i, shape in enumerate(target.validation_shapes(device, suite)):
        # GPU: the first kind of each shape run twice (unwritten/determinism).
        # Interpreter: only the first shape run twice.
        for j, kind in enumerate(check_kinds(target.kinds, device, suite, i)):
            twice = j == 0 if device == "cuda" else i == 0
            checks.append({"id": len(checks), "shape": shape.to_dict(), "kind": kind,
                           "seed": derive_seed(seed, "check", i, kind), "repeat": twice})
    params = TimingParams.for_device(device)
    if rounds is not None:
        params.rounds = rounds
    n_calls = params.rounds * params.calls
    passes = max(1, int(repeat))
    timed = []
    for idx, shape in enumerate(target.suite(suite)):
        samples = []
        for p in range(passes):
            for call in rng.sample(range(n_calls), min(SAMPLES_PER_SHAPE, n_calls)):
                rows = sorted(rng.sample(range(shape.rows), min(SAMPLE_ROWS, shape.rows)))
                samples.append({"pass": p, "call": call, "rows": rows})
        entry = {"idx": idx, "shape": shape.to_dict(), "name": shape.name, "samples": samples}
        if cached_baselines is not None:
            entry["cached_baselines"] = dict(cached_baselines[idx])
        timed.append(entry)
    precompile = None
    if device == "cuda" and compile_threads > 0:
        precompile = {"threads": int(compile_threads), "max_specs": MAX_SPECIALISATIONS,
                      "limit_s": PRECOMPILE_LIMIT_S}
    return {
        "target": target.spec, "kinds": list(target.kinds), "score_against": target.score_against,
        "device": device, "seed": seed, "checks": checks, "timed": timed, "timing": asdict(params),
        "baselines": [] if cached_baselines is not None else baselines,
        "baselines_cached": cached_baselines is not None,
        "passes": passes, "precompile": precompile,
    }


def timed_seed(seed: int, shape_idx: int, pass_idx: int, call: int) -> int:
    """Seed of the inputs of one timed call (identical for candidate, baseline and rival)."""
    return derive_seed(seed, "time", shape_idx, pass_idx, call)


def timed_kind(kinds: list[str] | tuple[str, ...], seed: int, shape_idx: int, pass_idx: int,
               call: int) -> str:
    """Input kind of one timed call: half the plain kind, half the adversarial kinds, by the
    seed, so a kernel cannot tell timed calls (and their re-checked samples) from checks."""
    return _half_plain(kinds, derive_seed(seed, "kind", shape_idx, pass_idx, call))


def shared_seed(seed: int, shape_idx: int, pass_idx: int) -> int:
    """Seed of a shape's shared inputs in one pass (targets with ``make_shared``): the same
    for every side and baseline, so all are timed on identical data."""
    return derive_seed(seed, "shared", shape_idx, pass_idx)


def shared_kind(kinds: list[str] | tuple[str, ...], seed: int, shape_idx: int, pass_idx: int) -> str:
    """Input kind of a shape's shared inputs in one pass, drawn like `timed_kind`."""
    return _half_plain(kinds, derive_seed(seed, "shared-kind", shape_idx, pass_idx))


def _half_plain(kinds: list[str] | tuple[str, ...], r: int) -> str:
    n = len(kinds) - 1
    if n < 1:
        return kinds[0]
    r %= 2 * n
    return kinds[r - n + 1] if r >= n else kinds[0]
