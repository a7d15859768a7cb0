"""GPU only (skipped without CUDA): the largest default decode shape (B 64, Hq 64, Hkv 8,
S_max 128k: a 32 GiB KV cache) is timed by the evaluator's harness for both baselines and
the strong seed within the memory budget of evaluator/targets/decode.py's docstring,
every set is freed before the next, and the checker's rebuild of a sampled call fits too."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from evaluator import get_target
from evaluator.correctness import compare
from evaluator.timed_inputs import TimedInputs
from evaluator.timing import TimingParams, time_call

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
EXTRA = 3 * GIB  # everything beside the cache: flush, masks, block mask, digest, workspace


def _seed():
    spec = importlib.util.spec_from_file_location("decode_seed", ROOT / "seeds" / "decode.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.attention


@pytest.mark.parametrize("lengths", ["ragged", "uniform"])
def test_largest_default_decode_shape_fits_with_one_shared_cache(lengths):
    import torch

    t = get_target("decode")
    big = max((s for s in t.suite("default") if s.lengths == lengths),
              key=lambda s: (s.B * s.S * s.Hkv, s.Hq))
    assert (big.B, big.Hq, big.Hkv, big.S, big.Sq) == (64, 64, 8, 131072, 1)
    cache = 2 * big.B * big.Hkv * big.S * big.D * 2
    assert cache == 32 * GIB
    torch.cuda.empty_cache()
    start = torch.cuda.memory_allocated()
    params = TimingParams.for_device("cuda")
    contestants = {"sdpa": t.baseline("sdpa", "cuda"), "flex": t.baseline("flex", "cuda"),
                   "seed": _seed()}
    samples = {}
    for name, fn in contestants.items():
        torch.cuda.reset_peak_memory_stats()
        with TimedInputs(t, big, 5, t.kinds, 0, 0, "cuda", verify=name == "seed") as make:
            rec = time_call(fn, make, params=params, device="cuda", expect=big.out_shape,
                            sample={3: [0]}, settle=make.settle)
            make.check_unchanged()
        peak = torch.cuda.max_memory_allocated() - start
        print(f"{name}: {rec.ms:.3f} ms, peak {peak / GIB:.2f} GiB above the start")
        assert peak < cache + EXTRA, (name, peak / GIB)
        assert torch.cuda.memory_allocated() - start < 64 << 20, name  # the set is gone
        samples[name] = rec.samples[0]["tensor"]
    # the checker's side: the shared cache rebuilt, call 3's inputs, the reference rows
    torch.cuda.reset_peak_memory_stats()
    with TimedInputs(t, big, 5, t.kinds, 0, 0, "cuda") as make:
        call = make(3)
        ref = t.reference(call, big, [0])
        low = t.lowp(call, big, [0])
        del call
    assert torch.cuda.max_memory_allocated() - start < cache + 14 * GIB
    for name, out in samples.items():
        st = compare(out.cuda(), ref, low, big.dtype, **t.tolerance)
        assert st.ok, (name, st.message)
