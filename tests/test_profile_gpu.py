"""GPU-only profiling tests (skipped without CUDA): the seed's compile info and one shape's
profile come back from the sandboxed worker with real, plausible numbers; a profile of a
rejected candidate says why it has none. `benchmarks/gpu/run.sh tests
tests/test_profile_gpu.py` runs them on a GPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator import EvalOptions, EvalResult, ProfileRequest, evaluate, get_target
from evaluator.ncu import find as find_ncu

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
QUICK = [s.name for s in get_target("gqa").suite("quick")]

pytestmark = pytest.mark.gpu


def test_seed_compile_info_and_profile_on_a_gpu():
    shape = QUICK[1]
    res = evaluate(SEEDS / "gqa.py", "gqa", "quick",
                   EvalOptions(baselines=("cudnn",), profile=ProfileRequest(shape)))
    assert res.ok and res.device == "cuda", res.to_json()
    info = res.compile_info
    assert info, res.log_tail
    names = {c.kernel for c in info}
    assert names & {"_attn_fwd", "_attn_fwd_persist"}, names
    for c in info:
        assert c.num_warps in (1, 2, 4, 8, 16, 32) and 1 <= c.num_stages <= 8, c
        assert c.shared is not None and c.shared < 256 * 1024, c
    launched = [c for c in info if c.registers is not None]
    assert launched and all(16 <= c.registers <= 255 and c.spills >= 0 for c in launched)
    assert any(c.compile_s and 0.05 < c.compile_s < 300 for c in info), info
    assert any("BLOCK_M=" in c.spec for c in info), [c.spec for c in info]
    p = res.profile
    assert p is not None and p.available and p.shape == shape, p
    assert p.ms == next(s.ms for s in res.shapes if s.name == shape)
    assert p.event_ms and 0.2 < p.event_ms / p.ms < 5.0, (p.event_ms, p.ms)  # warm vs flushed L2
    assert p.kernels and any(k.name.startswith("_attn_fwd") for k in p.kernels), p.kernels
    assert all(k.mean_us > 0 for k in p.kernels)
    assert not p.counters  # not asked for
    assert EvalResult.from_dict(res.to_dict()) == res  # stored as is


def test_a_profile_reads_the_gluon_seeds_wgmma_overlap_off_its_sass():
    """With a profile requested the worker writes the cubins of the kernels that wait with a
    wgmma group in flight and the evaluator disassembles them (the sandbox denies the
    worker nvdisasm: when the worker ran it, every value read None here). The Gluon seed's
    plain kernel (D=64 here) keeps the exp2s of a tile in flight (33 or more, as
    sm90_compile reads); its warp-specialised D=128 kernel retires PV(j-1) before the
    softmax (0: measured faster there); the tl seed never waits that way."""
    res = evaluate(SEEDS / "gqa_gluon.py", "gqa", "quick",
                   EvalOptions(baselines=("cudnn",), profile=ProfileRequest(QUICK[1])))
    assert res.ok, res.to_json()
    read = [c for c in res.compile_info if c.ex2_in_flight is not None]
    assert {c.kernel for c in read} >= {"_attn_fwd", "_attn_fwd_ws"}, res.compile_info
    assert all(c.ex2_in_flight >= 33 for c in read if c.kernel == "_attn_fwd"), read
    assert all(c.ex2_in_flight == 0 for c in read if c.kernel == "_attn_fwd_ws"), read
    plain = evaluate(SEEDS / "gqa.py", "gqa", "quick", EvalOptions(baselines=("cudnn",)))
    assert plain.ok and all(c.ex2_in_flight is None for c in plain.compile_info)


@pytest.mark.skipif(find_ncu() is None, reason="Nsight Compute (ncu) is not installed")
def test_nsight_compute_counters_from_a_sandboxed_profile_process():
    shape = QUICK[1]
    res = evaluate(SEEDS / "gqa.py", "gqa", "quick",
                   EvalOptions(baselines=("cudnn",), profile=ProfileRequest(shape, counters=True)))
    p = res.profile
    assert res.ok and p is not None and p.counters, p.note if p else res.to_json()
    attn = [c for c in p.counters if "_attn_fwd" in c.name]
    assert attn, [c.name for c in p.counters]
    m = attn[0].metrics
    assert m["gpu__time_duration.sum"] > 1.0, m
    assert 0 < m["sm__warps_active.avg.pct_of_peak_sustained_active"] <= 100, m
    assert "Nsight Compute" in p.tool


def test_profile_of_a_failing_candidate_says_why(tmp_path):
    bad = tmp_path / "wrong.py"
    bad.write_text((SEEDS / "gqa.py").read_text()
                   + "\n_real = attention\n\n\ndef attention(q, k, v, *, causal=False, "
                   "sm_scale=None):\n    return _real(q, k, v, causal=causal, "
                   "sm_scale=sm_scale) * 1.5\n")
    res = evaluate(bad, "gqa", "quick",
                   EvalOptions(baselines=("cudnn",), profile=ProfileRequest(QUICK[0])))
    assert not res.ok and res.failure.cls == "mismatch", res.to_json()
    assert res.profile is not None and not res.profile.available
    assert "no profile" in res.profile.note
    assert res.compile_info  # what compiled before the rejection is still shown
