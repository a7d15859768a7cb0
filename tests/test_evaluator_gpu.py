"""GPU-only evaluator tests (skipped without CUDA): faults end only their own process, the
next evaluation on the same GPU works; honest kernels pass with plausible numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator import EvalOptions, compare_candidates, evaluate

CAND = Path(__file__).parent / "candidates"
SEEDS = Path(__file__).resolve().parent.parent / "seeds"

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name,cls,timeout", [
    ("gpu_illegal_address", {"cuda_fault"}, 600.0),
    ("gpu_hang", {"timeout"}, 90.0),
    ("gpu_oom", {"oom"}, 600.0),
])
def test_fault_is_contained_and_next_evaluation_works(name, cls, timeout):
    bad = evaluate(CAND / f"{name}.py", "gqa", "smoke", EvalOptions(timeout_s=timeout, baselines=("cudnn",)))
    assert bad.status == "rejected" and bad.failure.cls in cls, bad.to_json()
    good = evaluate(CAND / "honest.py", "gqa", "smoke", EvalOptions(baselines=("cudnn",)))
    assert good.ok, good.to_json()
    assert good.device == "cuda" and good.timing == "cuda-events"


def test_honest_quick_suite_plausible():
    res = evaluate(CAND / "honest.py", "gqa", "quick", EvalOptions(baselines=("cudnn", "flash")))
    assert res.ok, res.to_json()
    assert res.primary_baseline == "cudnn"
    assert res.env["gpu"] and res.env["driver"]
    for s in res.shapes:
        assert 1.0 < s.tflops < 890.0
        assert s.baseline_ms > 0 and s.error_ratio is not None and s.error_ratio <= 3.0
    assert res.validation["checked"] == res.validation["passed"] == 64


def test_broken_kernels_rejected_on_gpu():
    # `unwritten` relies on the caching allocator handing the NaN-poisoned block back;
    # if it hands another block, the stale rows still fail as nonfinite or mismatch.
    for name, cls in (("ignores_causal", {"mismatch"}), ("assumes_mha", {"mismatch"}),
                      ("unwritten", {"unwritten", "nonfinite", "mismatch"}),
                      ("wrong_numbers", {"mismatch"}), ("nondeterministic", {"nondeterministic"})):
        res = evaluate(CAND / f"{name}.py", "gqa", "smoke", EvalOptions(baselines=("cudnn",)))
        assert res.status == "rejected" and res.failure.cls in cls, (name, res.failure)


def test_seed_and_aa_noise():
    seed = SEEDS / "gqa.py"
    if not seed.is_file():
        pytest.skip("seeds/gqa.py not present")
    res = evaluate(seed, "gqa", "quick", EvalOptions(baselines=("cudnn",), repeat=3))
    assert res.ok, res.to_json()
    assert len(res.repeats) == 3
    cmp = compare_candidates(seed, seed, "gqa", "quick", EvalOptions(baselines=("cudnn",)), rounds=3)
    assert cmp.failure is None and not cmp.better
    assert 0.85 < cmp.ratio < 1.15
