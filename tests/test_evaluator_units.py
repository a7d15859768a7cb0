"""Unit tests of the evaluator's pieces that need no worker process (CPU, seconds)."""

from __future__ import annotations

import torch

from evaluator.correctness import POISON_SECOND, classify_repeat, compare
from evaluator.env_info import peak_tflops
from evaluator.failures import FAILURE_CLASSES, classify_exception, classify_text
from evaluator.inputs import KINDS, derive_seed, make_inputs
from evaluator.noise import decide, geomean, spread
from evaluator.plan import build_plan
from evaluator.reference import reference, torch_lowp
from evaluator.targets import Shape, get_target
from evaluator.timing import wall_anomaly

SHAPE = Shape(1, 4, 2, 64, 64, True, "float16")


def _sdpa64(q, k, v, causal, scale):
    return torch.nn.functional.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), is_causal=causal, scale=scale, enable_gqa=True)


def test_inputs_are_reproducible_and_fresh():
    a = make_inputs(SHAPE, 123, "gaussian")
    b = make_inputs(SHAPE, 123, "gaussian")
    c = make_inputs(SHAPE, 124, "gaussian")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert derive_seed(1, "a", 2) == derive_seed(1, "a", 2) != derive_seed(1, "a", 3)
    q, k, v = make_inputs(Shape(1, 2, 2, 17, 64, False, "float16", layout="bshd"), 5)
    assert not q.is_contiguous() and q.shape == (1, 2, 17, 64)


def test_reference_matches_fp64_sdpa_and_rows():
    for kind in KINDS:
        q, k, v = make_inputs(SHAPE, 7, kind)
        ref = reference(q, k, v, causal=True, sm_scale=SHAPE.scale)
        exp = _sdpa64(q, k, v, True, SHAPE.scale)
        assert (ref - exp).abs().max() < 1e-9
        rows = [0, 5, 63]
        sub = reference(q, k, v, causal=True, sm_scale=SHAPE.scale, rows=rows)
        assert (sub - exp[:, :, rows]).abs().max() < 1e-9
        low = torch_lowp(q, k, v, causal=True, sm_scale=SHAPE.scale, rows=rows)
        assert low.dtype == torch.float16 and (low.double() - exp[:, :, rows]).abs().max() < 1e-2


def test_needle_rows_copy_their_value_row():
    shape = Shape(1, 2, 1, 50, 64, False, "float16")
    q, k, v = make_inputs(shape, 11, "needle")
    ref = reference(q, k, v, causal=False, sm_scale=shape.scale)
    scores = torch.einsum("bhsd,bkd->bhsk", q.double(), k[:, 0].double()) * shape.scale
    top = scores.softmax(-1).max(-1)
    peaked = top.values > 0.999
    assert peaked.sum() >= 2  # needles planted and dominant
    b, h, s = peaked.nonzero()[0].tolist()
    j = int(top.indices[b, h, s])
    assert torch.allclose(ref[b, h, s], v[b, 0, j].double(), atol=1e-2)


def test_rule_accepts_torch_and_rejects_shortcuts():
    for kind in KINDS:
        q, k, v = make_inputs(SHAPE, 3, kind)
        ref = reference(q, k, v, causal=True, sm_scale=SHAPE.scale)
        low = torch_lowp(q, k, v, causal=True, sm_scale=SHAPE.scale)
        assert compare(low, ref, low, "float16").ok  # torch itself passes (ratio 1)
        assert compare(ref.half(), ref, low, "float16").ok  # correctly rounded output passes
        mean_v = v.double().mean(2, keepdim=True).repeat_interleave(2, 1).expand_as(ref).half()
        bad = compare(mean_v, ref, low, "float16")
        assert not bad.ok and bad.cls == "mismatch", kind
        scaled = compare((ref * 1.01).half(), ref, low, "float16")
        assert not scaled.ok, kind
    nan = ref.half().clone()
    nan[0, 0, 0, 0] = float("nan")
    assert compare(nan, ref, low, "float16").cls == "nonfinite"


def test_repeat_classification():
    a = torch.randn(2, 3, 4, 8).half()
    assert classify_repeat(a, a.clone()) is None
    first, second = a.clone(), a.clone()
    first[0, 0, 3] = float("nan")
    second[0, 0, 3] = POISON_SECOND
    assert classify_repeat(first, second)[0] == "unwritten"
    other = a.clone()
    other[1, 2, 0, 0] += 0.5
    assert classify_repeat(a, other)[0] == "nondeterministic"


def test_failure_classification():
    assert set(FAILURE_CLASSES) >= {"syntax", "forbidden", "import", "compile", "runtime", "cuda_fault",
                                    "timeout", "oom", "mismatch", "nonfinite", "contract"}
    assert classify_text("RuntimeError: CUDA error: an illegal memory access was encountered") == "cuda_fault"
    assert classify_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate") == "oom"
    assert classify_text("ValueError: boom") is None
    assert classify_exception(ValueError("x")) == "runtime"
    assert classify_exception(MemoryError()) == "oom"


def test_noise_and_decision():
    assert abs(geomean([1.0, 4.0]) - 2.0) < 1e-12
    assert spread([1.0, 1.1, 0.9]) == (1.1 - 0.9) / 1.0
    ratio, noise, better = decide([1.0, 1.02, 0.98], [1.0, 1.0, 1.0], 1.03, 1.0)
    assert noise > 0.03 and not better  # a 3 % win inside 4 % noise is no win
    ratio, noise, better = decide([1.2, 1.21], [1.0, 1.0], 1.2, 1.0)
    assert better and abs(ratio - 1.2) < 1e-12
    assert not decide([1.005], [1.0], 1.005, 1.0)[2]  # below the 1 % floor


def test_timing_cross_checks_and_peak():
    assert wall_anomaly(5.0, 4.8, 5) is None
    assert "hidden" in wall_anomaly(5.0, 0.05, 5)
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H200") == 989.0 and peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0


def test_plan_is_seeded_and_covers_timed_samples():
    t = get_target("gqa")
    a = build_plan(t, "smoke", device="cpu", seed=9, baselines=["sdpa-cpu"], repeat=2)
    b = build_plan(t, "smoke", device="cpu", seed=9, baselines=["sdpa-cpu"], repeat=2)
    c = build_plan(t, "smoke", device="cpu", seed=10, baselines=["sdpa-cpu"], repeat=2)
    assert a == b and a["checks"] != c["checks"]
    assert a["passes"] == 2 and all(len(e["samples"]) == 4 for e in a["timed"])
    g = build_plan(t, "default", device="cuda", seed=9, baselines=["cudnn"])
    assert len(g["checks"]) == 16 * len(KINDS) and len(g["timed"]) == 24


def test_worker_env_is_scrubbed(tmp_path, monkeypatch):
    from evaluator import spawn

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "t")
    plan = spawn.worker_plan({"plan": {}}, tmp_path, interpreter=True, gpu=None)
    assert not any(k.endswith("_API_KEY") or "TOKEN" in k for k in plan.env)
    assert plan.env["TRITON_CACHE_DIR"].startswith(str(tmp_path))
    assert plan.env["HOME"].startswith(str(tmp_path)) and plan.env["TRITON_INTERPRET"] == "1"
    assert plan.isolation
