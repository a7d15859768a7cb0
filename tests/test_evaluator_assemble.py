"""The parent's validation of the worker's (untrusted) report: forged or impossible numbers."""

from __future__ import annotations

import pytest

from evaluator import EvalResult, assemble
from evaluator.failures import CandidateFailure
from evaluator.plan import build_plan
from evaluator.targets import get_target


def _plan():
    return build_plan(get_target("gqa"), "quick", device="cuda", seed=5, baselines=["cudnn", "flash"])


def _report(plan, ms, wall=None, base=1.0):
    timing, baselines = [], []
    for e in plan["timed"]:
        timing.append({"idx": e["idx"], "sides": [{"ms": [ms], "wall": [wall or [5.0, 4.9, 5]]}]})
        baselines.append({"idx": e["idx"], "times": {"cudnn": [base], "flash": [None]}})
    return {"timing": timing, "baselines": baselines, "env": {"gpu": "NVIDIA H100 80GB HBM3", "x": 1}}


def test_honest_numbers_build_shapes_and_score():
    plan = _plan()
    rep = _report(plan, 2.0)
    base = assemble.baseline_times(rep, plan)
    assert assemble.pick_primary(base, ["cudnn", "flash"]) == "cudnn"
    cand = assemble.side_times(rep, plan, 0)
    shapes, per_pass = assemble.build_shapes(get_target("gqa"), plan, cand, base, "cudnn", {}, "NVIDIA H100", "cuda")
    assert len(shapes) == 4 and all(s.speedup == 0.5 for s in shapes)
    assert per_pass == [pytest.approx(0.5)]
    assert set(assemble.clean_env(rep)) >= {"gpu", "torch", "triton"} and "x" not in assemble.clean_env(rep)


def test_beyond_peak_is_implausible():
    plan = _plan()
    rep = _report(plan, 1e-4)  # 1e-4 ms for a 4k-token shape: millions of TFLOP/s
    cand = assemble.side_times(rep, plan, 0)
    with pytest.raises(CandidateFailure) as e:
        assemble.build_shapes(get_target("gqa"), plan, cand, assemble.baseline_times(rep, plan), "cudnn", {},
                              "NVIDIA H100 80GB HBM3", "cuda")
    assert e.value.cls == "implausible"


@pytest.mark.parametrize("ms", [0.0, -1.0, float("nan"), "fast", None])
def test_forged_times_rejected(ms):
    plan = _plan()
    with pytest.raises(CandidateFailure) as e:
        assemble.side_times(_report(plan, ms), plan, 0)
    assert e.value.cls == "implausible"


def test_hidden_work_is_a_timing_anomaly():
    plan = _plan()
    with pytest.raises(CandidateFailure) as e:
        assemble.side_times(_report(plan, 2.0, wall=[12.0, 0.05, 5]), plan, 0)
    assert e.value.cls == "timing_anomaly"


def test_forged_failure_records():
    assert assemble.reported_failure({"failure": None}) is None
    assert assemble.reported_failure({"failure": {"class": "ok!", "message": "x"}}).cls == "forbidden"
    assert assemble.reported_failure({"failure": "bad"}).cls == "forbidden"
    f = assemble.reported_failure({"failure": {"class": "contract", "message": "m" * 10000}})
    assert f.cls == "contract" and len(f.message) <= 4000
    with pytest.raises(CandidateFailure):
        assemble.side_times({"timing": []}, _plan(), 0)


def test_a_shape_no_baseline_timed_is_left_out_of_the_score():
    """H100, decode default suite (2026-12-06): every baseline ran out of memory on two of
    40 shapes and the whole evaluation had no score; now those shapes are `unscored`."""
    plan = _plan()
    rep = _report(plan, 2.0)
    rep["baselines"][1]["times"] = {"cudnn": [None], "flash": [None]}
    base = assemble.baseline_times(rep, plan)
    assert assemble.pick_primary(base, ["cudnn", "flash"], "best") == assemble.BEST
    assert assemble.pick_primary(base, ["flash", "cudnn"]) == "cudnn"  # the most shapes covered
    none = {i: {"cudnn": [None], "flash": [None]} for i in base}
    assert assemble.pick_primary(none, ["cudnn"]) is None and assemble.pick_primary(none, ["cudnn"], "best") is None
    cand = assemble.side_times(rep, plan, 0)
    shapes, _ = assemble.build_shapes(get_target("gqa"), plan, cand, base, "cudnn", {}, "NVIDIA H100", "cuda")
    res = EvalResult(status="ok", target="gqa", suite="quick", score=0.5, device="cuda", shapes=shapes)
    assert [s.speedup for s in shapes].count(None) == 1 and res.unscored == [shapes[1].name]
