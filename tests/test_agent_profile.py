"""Compile info and profiles (issue 16, item 7) on the CPU: the records round-trip and
bound what a hostile worker reports; the evaluator and the agent's tools answer that no
GPU is there; `evolve show` prints a stored result's compile info; the tools' GPU-side
logic (reuse vs. a new evaluation, the shape's suite) against a recorded result.
GPU numbers: tests/test_profile_gpu.py and `benchmarks/gpu/run.sh agent-transcript`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator import (CompileInfo, EvalOptions, EvalResult, KernelTime, ProfileRequest,
                       ProfileResult, ShapeResult, UsageError, evaluate, get_target)
from evaluator.profiling import (MAX_KERNELS, MAX_PROFILE_KERNELS, NO_GPU,
                                 compile_info_from, profile_from_report)
from evolve.agent.budget import SessionBudget
from evolve.agent.gpu_tools import NO_GPU as AGENT_NO_GPU
from evolve.agent.handlers import SessionState, build_registry
from evolve.evaluation import Evaluations
from evolve.executors.base import EvalJob
from evolve.gitrepo import commit_message
from evolve.jobs import _Runner
from evolve.records import Candidate, sha256_text

from agent_support import make_ctx, make_run, no_evaluate, seed_source

ROOT = Path(__file__).resolve().parents[1]
SMOKE = [s.name for s in get_target("gqa").suite("smoke")]
QUICK = [s.name for s in get_target("gqa").suite("quick")]


def _info(**kw) -> CompileInfo:
    base = dict(kernel="_attn_fwd", spec="BLOCK_M=128 BLOCK_N=64 HEAD_DIM=128", registers=168,
                spills=0, shared=98304, num_warps=8, num_stages=3, compile_s=4.25)
    return CompileInfo(**{**base, **kw})


def _result(**kw) -> EvalResult:
    shape = ShapeResult(name=QUICK[1], B=4, Hq=32, Hkv=8, S=4096, D=128, causal=True,
                        dtype="bfloat16", ms=1.5, tflops=300.0, baseline_ms=1.8, speedup=1.2)
    base = dict(status="ok", target="gqa", suite="quick", score=1.2, device="cuda",
                timing="cuda-events", primary_baseline="cudnn", shapes=[shape],
                compile_info=[_info(), _info(kernel="_combine", spec="", registers=40,
                                             shared=0, num_warps=4, num_stages=1,
                                             compile_s=None, cache_hit=True)])
    return EvalResult(**{**base, **kw})


# ------------------------------------------------------------------ the records

def test_eval_result_round_trips_compile_info_and_profile():
    prof = ProfileResult(QUICK[1], available=True, tool="cuda-events + torch.profiler",
                         ms=1.5, event_ms=1.42, kernels=[KernelTime("_attn_fwd", 1, 1410.5)],
                         note="")
    res = _result(profile=prof)
    text = res.to_json()
    back = EvalResult.from_dict(json.loads(text))
    assert back == res
    assert back.compile_info[0].registers == 168 and back.compile_info[1].cache_hit is True
    assert back.profile.kernels[0].mean_us == 1410.5
    # results stored before this field existed read back with none
    old = res.to_dict()
    del old["compile_info"], old["profile"]
    assert EvalResult.from_dict(old).compile_info == [] and EvalResult.from_dict(old).profile is None


def test_hostile_compile_report_is_bounded_and_typed():
    evil = [{"kernel": "k" * 100_000, "spec": "\x1b[2J" + "x" * 100_000, "registers": True,
             "spills": -1, "shared": float("nan"), "num_warps": 10**12, "num_stages": "3",
             "compile_s": float("inf"), "cache_hit": "yes"}] * 10_000
    evil += ["not a dict", {"kernel": ""}, {"kernel": {"nested": 1}}]
    got = compile_info_from(evil)
    assert len(got) == MAX_KERNELS
    c = got[0]
    assert len(c.kernel) <= 120 and len(c.spec) <= 200 and "\x1b" not in c.spec
    assert (c.registers, c.spills, c.shared, c.num_warps, c.num_stages, c.compile_s) == (None,) * 6
    assert c.cache_hit is False
    assert compile_info_from({"kernel": "x"}) == [] and compile_info_from("junk") == []
    assert c.ex2_in_flight is None
    assert [compile_info_from([{"kernel": "k", "ex2_in_flight": v}])[0].ex2_in_flight
            for v in (64, -1, "64", True, 10**9)] == [64, None, None, None, None]
    assert [compile_info_from([{"kernel": "k", "f2fp_in_flight": v}])[0].f2fp_in_flight
            for v in (32, -1, "32", None)] == [32, None, None, None]
    assert compile_info_from([{"kernel": "ok", "registers": 255}])[0].registers == 255


def test_hostile_profile_report_is_bounded_and_its_time_is_the_trusted_one():
    req = ProfileRequest(QUICK[0])
    report = {"profile": {
        "shape": QUICK[0], "available": True, "tool": "t" * 10_000, "ms": 1e-9, "event_ms": -3,
        "kernels": [{"name": "n" * 10_000, "calls": 1, "mean_us": 5.0}] * 1000
        + [{"name": "x", "calls": "1", "mean_us": 1.0}],
        "note": "n" * 100_000}}
    p = profile_from_report(report, req, ms=2.5)
    assert p.ms == 2.5  # the evaluation's own validated time, not the worker's
    assert p.event_ms is None and len(p.tool) <= 80 and len(p.note) <= 600
    assert len(p.kernels) == MAX_PROFILE_KERNELS and len(p.kernels[0].name) <= 120
    # a record of another shape, or none, is no profile
    other = profile_from_report({"profile": {**report["profile"], "shape": QUICK[1]}}, req, 1.0)
    assert other.available is False and "no profile" in other.note
    assert profile_from_report({"profile": "junk"}, req, None).available is False


# ------------------------------------------------------- the evaluator on the CPU

def test_evaluator_answers_no_gpu_for_a_profile_on_the_interpreter(tmp_path):
    """Through the loop's own path: Evaluations.probe -> EvalJob -> executor -> run_job ->
    evaluate(EvalOptions(profile=...)) in the sandboxed worker."""
    path = tmp_path / "kernel.py"
    path.write_text(seed_source())
    with pytest.raises(UsageError, match="no shape 'nope'"):
        evaluate(path, "gqa", "smoke", EvalOptions(profile=ProfileRequest("nope")))
    run = make_run(tmp_path / "runs", "http://127.0.0.1:9/v1")
    evals = Evaluations(run)
    try:
        res = evals.probe(seed_source(), "smoke", profile=ProfileRequest(SMOKE[1]))
    finally:
        evals.shutdown()
    assert res.ok, res.to_json()
    assert res.compile_info == []  # the interpreter compiles nothing
    assert res.profile == ProfileResult(SMOKE[1], available=False, note=NO_GPU)


# ------------------------------------------------------------- the agent's tools

def _state(tmp_path, evaluate=no_evaluate, gpu=False) -> SessionState:
    run = make_run(tmp_path / "runs", "http://127.0.0.1:9/v1")
    run.config.gpu = gpu
    return SessionState(ctx=make_ctx(run, evaluate), source=seed_source(),
                        budget=SessionBudget(max_tool_calls=40, max_evaluations=3,
                                             max_tokens=0))


def test_tools_answer_no_gpu_on_the_interpreter_without_evaluating(tmp_path):
    st, reg = _state(tmp_path), build_registry()
    for name, args in (("compile_info", "{}"), ("profile", json.dumps({"shape": SMOKE[0]}))):
        out = reg.dispatch(st, name, args)
        assert out.ok and out.text == AGENT_NO_GPU, out.text
    assert "no GPU here" in AGENT_NO_GPU and st.budget.evaluations == 0 and st.evals == []
    assert not reg.dispatch(st, "profile", "{}").ok  # the shape is required


class _Recorder:
    """ctx.evaluate standing in for the executor: records calls, returns `result`."""

    def __init__(self, result: EvalResult):
        self.result, self.calls = result, []

    def __call__(self, source, suite, profile=None):
        self.calls.append((suite, profile))
        return self.result


def test_compile_info_reuses_the_latest_evaluation_of_the_same_source(tmp_path):
    ev = _Recorder(_result())
    st, reg = _state(tmp_path, ev, gpu=True), build_registry()
    first = reg.dispatch(st, "compile_info", "{}").text
    assert ev.calls == [("quick", None)] and st.budget.evaluations == 1
    assert "new quick-suite evaluation" in first
    assert "_attn_fwd" in first and "168" in first and "96.0" in first  # 98304 B = 96 KiB
    assert "BLOCK_M=128 BLOCK_N=64" in first and "(cached)" in first
    again = reg.dispatch(st, "compile_info", "{}").text
    assert ev.calls == [("quick", None)] and "of this same source" in again
    st.source += "# changed\n"
    reg.dispatch(st, "compile_info", "{}")
    assert len(ev.calls) == 2 and st.evaluated_sha == sha256_text(st.source)
    assert all(len(line) <= 80 for line in first.splitlines())


def test_profile_asks_the_evaluator_for_the_named_shape(tmp_path):
    prof = ProfileResult(QUICK[1], available=True, tool="cuda-events + torch.profiler",
                         ms=1.5, event_ms=1.42, kernels=[KernelTime("_attn_fwd", 1, 1410.5)],
                         note="torch.profiler unavailable: test")
    ev = _Recorder(_result(profile=prof))
    st, reg = _state(tmp_path, ev, gpu=True), build_registry()
    out = reg.dispatch(st, "profile", json.dumps({"shape": QUICK[1]}))
    assert out.ok, out.text
    assert ev.calls == [("quick", ProfileRequest(QUICK[1], counters=True))]
    assert "1.5000 ms" in out.text and "1410.5 us" in out.text and "torch.profiler unavailable" in out.text
    assert "overlap" not in out.text  # no SASS was read: nothing to say about it
    ev.result = _result(profile=prof, compile_info=[
        _info(kernel="_attn_fwd_ws", ex2_in_flight=64, f2fp_in_flight=0),
        _info(ex2_in_flight=0), _info()])
    seen = reg.dispatch(st, "profile", json.dumps({"shape": QUICK[1]})).text
    assert "intra-warpgroup overlap in the SASS" in seen
    assert "  _attn_fwd_ws: 64, cvt 0\n" in seen and "  _attn_fwd: 0 (overlap lost)\n" in seen
    assert seen.count("_attn_fwd: ") == 1  # the specialisation without SASS data is not listed
    assert [line for line in seen.splitlines() if len(line) > 80] == []
    bad = reg.dispatch(st, "profile", json.dumps({"shape": "B=1 nope"}))
    assert not bad.ok and "unknown shape" in bad.text and QUICK[0] in bad.text
    deep = [s.name for s in get_target("gqa").suite("default") if s.name not in QUICK][0]
    reg.dispatch(st, "profile", json.dumps({"shape": deep}))
    assert ev.calls[-1] == ("default", ProfileRequest(deep, counters=True))


def test_a_probe_job_carries_the_profile_request_to_the_evaluator(tmp_path):
    job = EvalJob(job_id="probe-1", kind="probe", target="gqa", suite="quick", source="x",
                  profile=ProfileRequest(QUICK[0], calls=7).to_dict())
    again = EvalJob.from_dict(json.loads(json.dumps(job.to_dict())))  # as Ray ships it
    opts = _Runner(again, None, tmp_path, None, None, None, None, None).options()
    assert opts.profile == ProfileRequest(QUICK[0], calls=7)


# --------------------------------------------------------------------- evolve show

def test_show_prints_the_stored_compile_info(tmp_path):
    run = make_run(tmp_path, "http://127.0.0.1:9/v1")
    src = seed_source() + "# child\n"
    parent = run.store.get_candidate(0).commit_sha
    sha = run.repo.commit_candidate(1, src, [parent],
                                    commit_message(1, "child", {"Operator": "x"}))
    cand = Candidate(id=1, parent_id=0, source=src, operator="agent", commit_sha=sha,
                     hypothesis="child").with_result(_result())
    run.store.add_candidate(cand)
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "evolve", "show", "agent-test", "1",
                          "--runs-dir", str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "compiled specialisations" in text and "_attn_fwd" in text and "_combine" in text
    assert "168" in text and "96.0" in text and "4.25" in text and "BLOCK_M=128" in text
    assert all(len(line) <= 80 for line in text.splitlines())
