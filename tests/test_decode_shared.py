"""Shared timed inputs (evaluator/timed_inputs.py, the decode target's KV cache): the same
cache storage across timed calls with a fresh query, planted probes undone after each
call, the checker's rebuild of a call identical to the worker's, the keyed digest, and
end to end on the interpreter: a candidate that writes to the shared cache during timing
is rejected (`mutation`), ones that reuse an output or a snapshot of the cache across
timed calls are caught by the re-check of sampled timed outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evaluator import EvalOptions, evaluate, get_target
from evaluator.plan import timed_kind, timed_seed
from evaluator.timed_inputs import InputsModified, TimedInputs, digest

ROOT = Path(__file__).resolve().parent.parent
NAIVE = (ROOT / "seeds" / "decode_naive.py").read_text()
SEED = 77


def _clone(call):
    return [t.clone() for t in call.tensors()]


def test_shared_cache_storage_is_kept_and_each_call_gets_a_fresh_query():
    t = get_target("decode")
    shape = t.suite("smoke")[1]  # B=2, Hq=4, Hkv=2, Sq=4, ragged, fp16
    with TimedInputs(t, shape, SEED, t.kinds, 0, 0, "cpu", verify=True) as make:
        base = [x.clone() for x in make.shared.tensors.values()]
        calls = []
        for n in range(4):
            c = make(n)
            q, k, v = c.args
            calls.append(c)
            assert k is make.shared["k_cache"] and v is make.shared["v_cache"]
            assert not torch.equal(k, base[0])  # the needle and the stale poison are planted
            make.settle()
            assert torch.equal(k, base[0]) and torch.equal(v, base[1])  # ... and undone exactly
        qs = [c.args[0] for c in calls]
        assert len({x.data_ptr() for x in qs}) == 4  # fresh storage (all alive here)
        assert all(not torch.equal(qs[0], x) for x in qs[1:])  # fresh values
        assert len({c.kwargs["cache_seqlens"].data_ptr() for c in calls}) == 4
        assert all(c.kwargs["cache_seqlens"][:2].tolist() == [shape.Sq, shape.S] for c in calls)
        make.check_unchanged()
    assert make.shared is None  # freed on leaving the block


def test_checker_rebuilds_exactly_the_call_the_worker_timed():
    t = get_target("decode")
    shape = t.suite("smoke")[0]
    with TimedInputs(t, shape, SEED, t.kinds, 3, 1, "cpu") as worker:
        for n in (-1, 0, 1):  # warm-up and earlier calls leave nothing behind
            worker(n)
            worker.settle()
        seen = _clone(worker(2))
    with TimedInputs(t, shape, SEED, t.kinds, 3, 1, "cpu") as checker:
        again = _clone(checker(2))
    assert all(torch.equal(a, b) for a, b in zip(seen, again))
    # the probes are real: per (sequence, kv head) one visible key scores 40 with a query
    # row of its group; keys from L_b on hold the poison value 100
    q, k, v, lens = seen
    G = shape.G
    for b in range(shape.B):
        L = int(lens[b])
        for h in range(shape.Hkv):
            s = q[b, h * G:(h + 1) * G].float() @ k[b, h, :L].float().T * shape.scale
            assert abs(float(s.max()) - 40.0) < 1.0
        if L < shape.S:
            assert (v[b, :, L:L + 16] == 100).all()


def test_targets_without_shared_inputs_keep_fresh_inputs_per_call():
    t = get_target("gqa")
    shape = t.suite("smoke")[0]
    with TimedInputs(t, shape, SEED, t.kinds, 0, 0, "cpu", verify=True) as make:
        assert make.shared is None and make.settle is None
        c = make(5)
        want = t.make_inputs(shape, timed_seed(SEED, 0, 0, 5), timed_kind(t.kinds, SEED, 0, 0, 5), "cpu")
        assert all(torch.equal(a, b) for a, b in zip(c.tensors(), want.tensors()))


def test_digest_sees_one_changed_word_and_the_harness_reports_it():
    x = torch.randn(3, 5, 7, dtype=torch.bfloat16)
    d = digest([x], 5)
    assert d == digest([x.clone()], 5) and d != digest([x], 6)
    y = x.clone()
    y.view(torch.int16)[1, 2, 3] += 1
    assert digest([y], 5) != d
    t = get_target("decode")
    with TimedInputs(t, t.suite("smoke")[0], SEED, t.kinds, 0, 0, "cpu", verify=True) as make:
        make(0)
        make.settle()
        make.check_unchanged()
        make.shared["v_cache"][1, 0, 0, 0] += 1.0
        with pytest.raises(InputsModified):
            make.check_unchanged()


def _candidate(tmp_path: Path, name: str, wrapper: str) -> Path:
    """The naive decode seed with ``wrapper`` run first in attention(); it counts calls (6
    correctness calls on the smoke suite: 5 checks, the first twice) to act in timing only."""
    head = "def attention(q, k_cache, v_cache, *, cache_seqlens, sm_scale=None):\n"
    assert NAIVE.count(head) == 1
    src = NAIVE.replace(head, "_N = [0]\n_MEMO = {}\n\n\n" + head + "    _N[0] += 1\n" + wrapper)
    p = tmp_path / f"{name}.py"
    p.write_text(src)
    return p


@pytest.mark.slow
def test_shared_cache_cheats_are_caught_in_timing(tmp_path):
    opts = EvalOptions(seed=SEED)
    # writes into the stale part of sequence 0's cache (length Sq: never read) once timing runs
    writer = _candidate(tmp_path, "writer", "    if _N[0] > 6:\n        k_cache[0, :, -1] += 1.0\n")
    res = evaluate(writer, "decode", "smoke", opts)
    assert not res.ok and res.failure.cls == "mutation", res.failure
    assert "shared input" in res.failure.message
    # returns the output of its first timed call for every later call on the same cache
    memo = _candidate(tmp_path, "memo", (
        "    key = (k_cache.data_ptr(), tuple(q.shape))\n"
        "    if _N[0] > 6 and key in _MEMO:\n        return _MEMO[key]\n"
        "    _MEMO[key] = _real(q, k_cache, v_cache, cache_seqlens=cache_seqlens, sm_scale=sm_scale)\n"
        "    return _MEMO[key]\n\n\ndef _real(q, k_cache, v_cache, *, cache_seqlens, sm_scale=None):\n"))
    res = evaluate(memo, "decode", "smoke", EvalOptions(seed=SEED, static_check=False))
    assert not res.ok and res.failure.cls == "mismatch", res.failure
    assert "re-check of a timed output" in res.failure.message
    # computes on a snapshot of the cache taken at its first timed call (a preprocessed copy)
    snap = _candidate(tmp_path, "snap", (
        "    if _N[0] > 6:\n"
        "        key = k_cache.data_ptr()\n"
        "        if key not in _MEMO:\n            _MEMO[key] = (k_cache.clone(), v_cache.clone())\n"
        "        k_cache, v_cache = _MEMO[key]\n"))
    res = evaluate(snap, "decode", "smoke", EvalOptions(seed=SEED, static_check=False))
    assert not res.ok and res.failure.cls == "mismatch", res.failure
    assert "re-check of a timed output" in res.failure.message


def test_a_target_file_with_half_of_the_shared_pair_is_refused(tmp_path):
    from evaluator.targets import TargetError
    from evaluator.targets.plugin import load_file

    src = (ROOT / "examples" / "softcap_target.py").read_text()
    bad = tmp_path / "half.py"
    bad.write_text(src + "\n\ndef make_shared(shape, seed, kind, device):\n    return {}\n")
    with pytest.raises(TargetError, match="need both make_shared and make_call"):
        load_file(bad)
    assert not load_file(ROOT / "examples" / "softcap_target.py").shares_inputs
