"""Evaluator throughput features on the CPU: caller-supplied baselines, stage callbacks,
the small quick-suite validation set, vectorised needle inputs (the precompile stage's
CPU-testable parts are in test_evaluator_precompile.py).

The end-to-end evaluations run once, in parallel, in a module fixture."""

from __future__ import annotations

import dataclasses
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from evaluator import EvalOptions, EvalResult, assemble, evaluate, get_target
from evaluator.inputs import KINDS, make_inputs
from evaluator.plan import build_plan
from evaluator.progress import STAGES, LogFollower, StageReporter
from evaluator.targets import Shape

from candidates.make import path as cand

CAND = Path(__file__).parent / "candidates"
SMOKE = [s.name for s in get_target("gqa").suite("smoke")]
OK_STAGES = ["init", "awaiting-gpu", "baselines", "confine", "import", "precompile",
             "correctness", "awaiting-verdict", "checker", "timing", "done", "checker"]

HOOK_CANDIDATE = '''
import torch
import triton


def attention(q, k, v, *, causal=False, sm_scale=None):
    triton.knobs.runtime.jit_cache_hook = lambda **kw: True   # would skip launches
    return torch.empty_like(q)
'''


# ---- end to end (CPU interpreter, smoke suite) ---------------------------------------------

def _job(name: str, tmp: Path):
    stages: list[str] = []

    def record_and_raise(stage: str) -> None:
        stages.append(stage)
        raise RuntimeError("a broken progress callback")

    log = tmp / f"{name}.log"
    opts = dict(on_stage=record_and_raise, log_path=log)
    if name == "ok":
        res = evaluate(CAND / "honest.py", "gqa", "smoke", EvalOptions(**opts))
    elif name == "cached":
        res = evaluate(CAND / "honest.py", "gqa", "smoke",
                       EvalOptions(baseline_ms={n: {"sdpa-cpu": 5.0, "cudnn": 9.0} for n in SMOKE}, **opts))
    elif name == "partial":
        res = evaluate(CAND / "honest.py", "gqa", "smoke",
                       EvalOptions(baseline_ms={SMOKE[0]: {"sdpa-cpu": 5.0}}, **opts))
    elif name == "mismatch":
        res = evaluate(cand("wrong_numbers"), "gqa", "smoke", EvalOptions(**opts))
    elif name == "import_error":
        res = evaluate(CAND / "import_error.py", "gqa", "smoke", EvalOptions(**opts))
    elif name == "hook":
        src = tmp / "sets_hook.py"
        src.write_text(HOOK_CANDIDATE)
        res = evaluate(src, "gqa", "smoke", EvalOptions(static_check=False, **opts))
    else:
        raise ValueError(name)
    return res, stages, log.read_text(errors="replace") if log.is_file() else ""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speed")
    names = ["ok", "cached", "partial", "mismatch", "import_error", "hook"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(names, pool.map(lambda n: _job(n, tmp), names)))


def test_on_stage_in_order_for_ok_and_callback_errors_swallowed(runs):
    res, stages, log = runs["ok"]
    assert res.ok, res.to_json()
    assert stages == OK_STAGES
    assert "precompile: skipped (interpreter)" in log
    assert res.baselines_cached is False and "baselines: timed sdpa-cpu" in log
    # where the correctness seconds went: one line, every part named, the first call of
    # each shape (compiles, module loads) apart from the rest
    m = re.search(r"correctness: (\d+) checks, inputs ([0-9.]+) s, poison ([0-9.]+) s, "
                  r"calls ([0-9.]+) s, first calls ([0-9.]+) s, checks ([0-9.]+) s, "
                  r"save ([0-9.]+) s", log)
    assert m and int(m[1]) > 0 and float(m[5]) > 0, log[-1500:]


def test_on_stage_in_order_for_rejections(runs):
    res, stages, _ = runs["mismatch"]
    assert res.status == "rejected" and res.failure.cls == "mismatch"
    assert stages == OK_STAGES[:9]  # ... awaiting-verdict, checker: the worker is never released
    res, stages, _ = runs["import_error"]
    assert res.status == "rejected" and res.failure.cls == "import"
    assert stages == ["init", "awaiting-gpu", "baselines", "confine", "import"]


def test_full_baseline_ms_skips_baseline_timing(runs):
    res, stages, log = runs["cached"]
    assert res.ok, res.to_json()
    assert res.baselines_cached is True and res.to_dict()["baselines_cached"] is True
    assert "baselines: not timed (given by the caller)" in log and "baselines: timed" not in log
    assert res.primary_baseline == "sdpa-cpu"
    for s in res.shapes:
        assert s.baseline_ms == 5.0 and s.baselines == {"sdpa-cpu": 5.0}  # requested ones only
        assert s.speedup == pytest.approx(5.0 / s.ms)
    # no baseline to time: the GPU gate comes after the CPU part (import, precompile)
    assert stages == ["init", "baselines", "confine", "import", "precompile", "awaiting-gpu",
                      *OK_STAGES[6:]]


def test_partial_baseline_ms_is_measured(runs):
    res, _, log = runs["partial"]
    assert res.ok, res.to_json()
    assert res.baselines_cached is False and "baselines: timed sdpa-cpu" in log
    # where the correctness seconds went: one line, every part named, the first call of
    # each shape (compiles, module loads) apart from the rest
    m = re.search(r"correctness: (\d+) checks, inputs ([0-9.]+) s, poison ([0-9.]+) s, "
                  r"calls ([0-9.]+) s, first calls ([0-9.]+) s, checks ([0-9.]+) s, "
                  r"save ([0-9.]+) s", log)
    assert m and int(m[1]) > 0 and float(m[5]) > 0, log[-1500:]
    assert all(s.baseline_ms != 5.0 and s.baseline_ms > 0 for s in res.shapes)


def test_jit_cache_hook_set_by_candidate_is_tampering(runs):
    res, _, _ = runs["hook"]
    assert res.status == "rejected" and res.failure.cls == "forbidden", res.to_json()
    assert "jit_cache_hook" in res.failure.message


# ---- plan, assemble, result, options -------------------------------------------------------

def test_quick_plan_uses_the_small_validation_set():
    t = get_target("gqa")
    quick = build_plan(t, "quick", device="cuda", seed=1, baselines=["cudnn"])
    default = build_plan(t, "default", device="cuda", seed=1, baselines=["cudnn"])
    qshapes = {json.dumps(c["shape"], sort_keys=True) for c in quick["checks"]}
    assert len(qshapes) == len(t.quick_validation) == 5
    assert {Shape.from_dict(json.loads(s)) for s in qshapes} == set(t.quick_validation)
    assert len(default["checks"]) == 16 * len(KINDS)  # the default suite keeps the full set
    per_shape: dict[str, set[str]] = {}
    for c in quick["checks"]:
        per_shape.setdefault(json.dumps(c["shape"], sort_keys=True), set()).add(c["kind"])
    assert all("gaussian" in k and len(k) == 2 for k in per_shape.values())
    assert set().union(*per_shape.values()) == set(KINDS)
    qv = t.quick_validation
    assert {s.causal for s in qv} == {False, True} and {s.D for s in qv} == {64, 128}
    assert any(s.G > 1 for s in qv) and any(s.Hkv == s.Hq for s in qv)
    assert any(s.S in (127, 1000) for s in qv) and any(s.dtype == "float16" for s in qv)
    assert any(s.sm_scale is not None for s in qv)
    assert all(s.G == 1 for s in get_target("mha").validation_shapes("cuda", "quick"))
    assert t.validation_shapes("cuda") == list(t.gpu_validation)
    assert t.validation_shapes("cpu", "quick") == list(t.cpu_validation)


def test_plan_carries_cached_baselines_and_precompile_settings():
    t = get_target("gqa")
    cached = {i: {"cudnn": 1.0 + i} for i in range(len(t.suite("quick")))}
    p = build_plan(t, "quick", device="cuda", seed=1, baselines=["cudnn"], cached_baselines=cached,
                   compile_threads=4)
    assert p["baselines"] == [] and p["baselines_cached"]
    assert [e["cached_baselines"] for e in p["timed"]] == [cached[i] for i in range(len(cached))]
    assert p["precompile"] == {"threads": 4, "max_specs": 256, "limit_s": 120.0}
    assert build_plan(t, "quick", device="cuda", seed=1, baselines=["cudnn"])["precompile"] is None
    assert build_plan(t, "smoke", device="cpu", seed=1, baselines=["sdpa-cpu"],
                      compile_threads=8)["precompile"] is None


def test_covered_baselines_and_parent_side_numbers():
    shapes = get_target("gqa").suite("quick")
    full = {s.name: {"cudnn": 0.5, "flash": 0.7} for s in shapes}
    assert assemble.covered_baselines(full, shapes, ["cudnn"]) == {i: {"cudnn": 0.5} for i in range(4)}
    assert assemble.covered_baselines(full, shapes, ["cudnn", "flex"]) is None
    assert assemble.covered_baselines({shapes[0].name: {"cudnn": 0.5}}, shapes, ["cudnn"]) is None
    bad = dict(full, **{shapes[1].name: {"cudnn": float("nan")}})
    assert assemble.covered_baselines(bad, shapes, ["cudnn"]) is None
    assert assemble.covered_baselines({**full, shapes[2].name: {"cudnn": -1}}, shapes, ["cudnn"]) is None
    assert assemble.covered_baselines(None, shapes, ["cudnn"]) is None
    plan = build_plan(get_target("gqa"), "quick", device="cuda", seed=3, baselines=["cudnn"], repeat=2,
                      cached_baselines=assemble.covered_baselines(full, shapes, ["cudnn"]))
    forged = {"baselines": [{"idx": e["idx"], "times": {"cudnn": [1e-9, 1e-9]}} for e in plan["timed"]]}
    base = assemble.baseline_times(forged, plan)  # the worker's report is ignored
    assert base == {i: {"cudnn": [0.5, 0.5]} for i in range(4)}


def test_result_and_options_fields():
    r = EvalResult(status="ok", target="gqa", suite="quick", score=1.0, baselines_cached=True)
    assert EvalResult.from_dict(json.loads(r.to_json())).baselines_cached is True
    assert EvalResult.from_dict({"status": "ok", "target": "gqa", "suite": "q"}).baselines_cached is False
    names = {f.name for f in dataclasses.fields(EvalOptions)}
    assert {"baseline_ms", "compile_threads", "on_stage"} <= names
    o = EvalOptions(on_stage=print, scratch_dir=Path("/tmp/x"), baselines=("cudnn",),
                    baseline_ms={"a": {"cudnn": 1.0}})
    assert dataclasses.replace(o, repeat=2).on_stage is print
    assert EvalOptions(compile_threads=0).resolved_compile_threads() == 0
    assert 1 <= EvalOptions().resolved_compile_threads() <= 8


# ---- progress ------------------------------------------------------------------------------

def test_stage_reporter_and_log_follower(tmp_path):
    got: list[str] = []

    def cb(stage: str) -> None:
        got.append(stage)
        raise ValueError("ignored")

    rep = StageReporter(cb)
    for s in ("init", "init", "bogus", "baselines", "checker"):
        rep(s)
    assert got == ["init", "baselines", "checker"]
    log = tmp_path / "w.log"
    seen: list[str] = []
    f = LogFollower(log, seen.append)
    f.poll()  # no file yet: nothing
    log.write_bytes(b"noise\n[evaluator-worker] stage: init t=0.0s\n[evaluator-wor")
    f.poll()
    assert seen == ["init"]
    with open(log, "ab") as fh:
        fh.write(b"ker] stage: import t=1.0s\ncandidate text[evaluator-worker] stage: timing t=2s")
    f.poll()
    assert seen == ["init", "import"]
    f.poll(final=True)
    assert seen == ["init", "import", "timing"]
    assert set(STAGES) >= set(OK_STAGES)


# ---- inputs: vectorised needles ------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_needles_planted_and_reproducible(causal):
    shape = Shape(2, 6, 3, 40, 64, causal, "float16")
    q, k, v = make_inputs(shape, 21, "needle")
    q2, k2, _ = make_inputs(shape, 21, "needle")
    assert torch.equal(q, q2) and torch.equal(k, k2)
    kk = k.double().repeat_interleave(shape.G, 1)
    scores = torch.einsum("bhsd,bhkd->bhsk", q.double(), kk) * shape.scale
    if causal:
        scores = scores.masked_fill(torch.ones(40, 40, dtype=torch.bool).triu(1), float("-inf"))
    peaked = scores.softmax(-1).max(-1).values > 0.99
    per_kv_head = peaked.view(2, 3, shape.G, 40).sum((2, 3))
    assert (per_kv_head >= 2).all()  # needles in every (batch, kv head), visible when causal
