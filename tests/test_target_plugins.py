"""Targets as plugins: the decode target and its seeds, a target file given by path (the
README's soft-capping example), malformed target files, and the CLI around them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator import EvalOptions, evaluate, get_target, list_targets
from evaluator.targets import TargetError, UnknownTarget

ROOT = Path(__file__).resolve().parent.parent
SOFTCAP = ROOT / "examples" / "softcap_target.py"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="80", OPENAI_API_KEY="", OPENAI_BASE_URL="")
    return subprocess.run([sys.executable, "-m", "evolve", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=cwd or ROOT, stdin=subprocess.DEVNULL)


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- the decode target -------------------------------------------------------------------

def test_decode_suites_and_validation_cover_the_issue():
    t = get_target("decode")
    assert t.entry == "attention" and "cache_seqlens" in t.contract and t.score_against == "best"
    assert t.baselines == ("sdpa", "flex")
    default = t.suite("default")
    assert {s.B for s in default} == {1, 16, 64} and {s.S for s in default} == {4096, 32768, 131072}
    assert {(s.Hq, s.Hkv) for s in default} == {(32, 8), (64, 8)}
    assert {s.lengths for s in default} == {"ragged", "uniform"} and {s.Sq for s in default} == {1, 4}
    assert all(s.dtype == "bfloat16" and s.D == 128 for s in default)
    grid = {(s.B, s.S, s.Hq, s.lengths) for s in default if s.Sq == 1}  # the issue's full grid
    assert len(grid) == 3 * 3 * 2 * 2 and t.shares_inputs
    gpu = t.validation_shapes("cuda")
    assert {s.Sq for s in gpu} == {1, 4} and {s.D for s in gpu} == {64, 128}
    assert {1, 2, 4, 7, 8} <= {s.G for s in gpu} and {"float16", "bfloat16"} <= {s.dtype for s in gpu}
    assert any(s.sm_scale is not None for s in gpu) and any(s.S == 1 for s in gpu)
    cpu = t.validation_shapes("cpu")
    assert all(s.dtype == "float16" and s.S <= 128 for s in cpu + t.suite("smoke"))
    assert {s.Sq for s in cpu} == {1, 4}


def test_decode_lengths_ragged_include_1_and_s_max_and_stale_tail_is_poison():
    t = get_target("decode")
    shape = t.suite("smoke")[0]  # B=2, Sq=1, ragged
    call = t.make_inputs(shape, 5, "stale_tail", "cpu")
    lens = call.kwargs["cache_seqlens"]
    assert lens.tolist() == [1, shape.S] and str(lens.dtype) == "torch.int32"
    again = t.make_inputs(shape, 5, "stale_tail", "cpu")  # bit-reproducible from the seed
    assert all(bool((a == b).all()) for a, b in zip(call.tensors(), again.tensors()))
    k, v = call.args[1], call.args[2]
    assert bool((v[0, :, 1:] == 100).all())  # everything past L_0 = 1 is poison
    # a kernel that reads the whole cache (ignores the lengths) is far off the reference
    import torch
    q = call.args[0].double()
    s = torch.einsum("bhqd,bhkd->bhqk", q, k.double()) * shape.scale
    wrong = torch.einsum("bhqk,bhkd->bhqd", torch.softmax(s, -1), v.double())
    ref = t.reference(call, shape)
    assert float((wrong[0] - ref[0]).abs().max()) > 10


@pytest.mark.parametrize("seed", ["decode_naive.py", "decode.py"])
def test_decode_seeds_match_the_reference_in_the_interpreter(seed):
    """Every CPU validation shape x every input kind, fp16 (bf16 tl.dot is wrong on CPU);
    decode.py also with tiny blocks so the split-KV path and the reduction kernel run."""
    code = f"""
import importlib.util, sys
from evaluator.targets import get_target
from evaluator.correctness import compare
t = get_target("decode")
spec = importlib.util.spec_from_file_location("k", "seeds/{seed}")
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
configs = [dict(m.CONFIG)]
if "MIN_BLOCKS_PER_SPLIT" in m.CONFIG:
    configs.append(dict(m.CONFIG, BLOCK_N=16, MIN_BLOCKS_PER_SPLIT=1))
n = 0
for cfg in configs:
    m.CONFIG.update(cfg)
    for i, sh in enumerate(t.validation_shapes("cpu")):
        for kind in t.kinds:
            c = t.make_inputs(sh, 100 + i, kind, "cpu")
            st = compare(m.attention(*c.args, **c.kwargs), t.reference(c, sh), t.lowp(c, sh), sh.dtype)
            assert st.ok, (cfg, sh.name, kind, st.message)
            n += 1
if len(configs) > 1:
    assert max(m._num_splits(s.B, s.Hkv, s.S, 16) for s in t.validation_shapes("cpu")) > 1
print("checked", n)
"""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "checked" in r.stdout


def test_decode_evaluates_ok_and_a_kernel_that_ignores_lengths_is_rejected(tmp_path):
    res = evaluate(ROOT / "seeds" / "decode.py", "decode", "smoke", EvalOptions(seed=11))
    assert res.ok, res.failure
    assert res.target == "decode" and res.primary_baseline == "best"
    assert [s.name for s in res.shapes] == [s.name for s in get_target("decode").suite("smoke")]
    assert res.validation["checked"] == res.validation["passed"] == 5
    # the naive seed with its lengths replaced by S_max reads stale cache entries
    src = (ROOT / "seeds" / "decode_naive.py").read_text()
    bad = tmp_path / "k.py"
    bad.write_text(src.replace("L = tl.load(Lens + b)", "L = tl.load(Lens + b) * 0 + MAXLEN")
                   .replace("G: tl.constexpr, SQ", "MAXLEN, G: tl.constexpr, SQ")
                   .replace("out.stride(0), out.stride(1), out.stride(2),\n",
                            "out.stride(0), out.stride(1), out.stride(2), k_cache.shape[2],\n"))
    res = evaluate(bad, "decode", "smoke", EvalOptions(seed=11))
    assert not res.ok and res.failure.cls == "mismatch", res.failure


# ---- a target file by path: the soft-capping example --------------------------------------

def test_softcap_example_loads_and_its_cap_is_checked(tmp_path):
    t = get_target(str(SOFTCAP))
    assert t.name == "softcap" and t.spec["path"] == str(SOFTCAP.resolve())
    assert t.baselines == ("flex",) and "softcap" in t.contract
    res = evaluate(ROOT / "examples" / "softcap_seed.py", str(SOFTCAP), "smoke", EvalOptions(seed=3))
    assert res.ok, res.failure
    assert res.target == "softcap" and res.primary_baseline == "torch-cpu"
    uncapped = tmp_path / "k.py"  # the same kernel without the cap must fail validation
    src = (ROOT / "examples" / "softcap_seed.py").read_text()
    uncapped.write_text(src.replace("s = cap * (1.0 - 2.0 / (tl.exp(2.0 * s / cap) + 1.0))", "s = s"))
    res = evaluate(uncapped, str(SOFTCAP), "smoke", EvalOptions(seed=3))
    assert not res.ok and res.failure.cls == "mismatch", res.failure


LEAKY_TARGET = """
import gc, importlib.util, sys, weakref
_spec = importlib.util.spec_from_file_location("softcap_base", {softcap!r})
_base = sys.modules["softcap_base"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)
globals().update({{k: getattr(_base, k) for k in dir(_base) if not k.startswith("__")}})
NAME = "leaky"
_held = []


def _leaky():
    ref = _torch_fp32()

    def run(q, k, v, **kw):
        if _held:  # the call after the refusal: are the refused call's inputs still held?
            print(f"[leaky] refused inputs alive: {{_held[0]() is not None}}", file=sys.stderr, flush=True)
            return ref(q, k, v, **kw)
        gc.disable()  # only the worker runs baselines: no collector between the calls
        big = q.new_zeros(1 << 20)
        _held.append(weakref.ref(big))
        try:
            raise ValueError("inner")
        except ValueError as e:
            err = e  # this frame holds the exception, its traceback this frame: a cycle
            raise RuntimeError("leaky refuses this shape") from err

    return run


BASELINES = {{"cuda": {{"leaky": _leaky}}, "cpu": {{"leaky": _leaky, "torch-cpu": _torch_fp32}}}}
"""


def test_a_refused_baseline_leaves_no_inputs_behind(tmp_path):
    """H100, decode default suite (2026-12-06): a baseline refusal's traceback cycle kept a
    32 GiB KV cache alive into the next shape, where every baseline then ran out of memory.
    The worker breaks the cycle and collects it before the next call."""
    target = tmp_path / "leaky_target.py"
    target.write_text(LEAKY_TARGET.format(softcap=str(SOFTCAP)))
    res = evaluate(ROOT / "examples" / "softcap_seed.py", str(target), "smoke",
                   EvalOptions(seed=3, baselines=("leaky", "torch-cpu")))
    assert res.ok and res.score, res.failure
    assert "leaky refuses this shape" in res.log_tail
    assert "[leaky] refused inputs alive: False" in res.log_tail, res.log_tail[-1500:]
    assert "[leaky] refused inputs alive: True" not in res.log_tail
    assert res.primary_baseline == "torch-cpu" and res.unscored == []


def test_candidate_cannot_open_the_target_file(tmp_path):
    """The worker never reads the target file (it gets the source in the plan); the guard
    denies candidate code opening it even with the static check off."""
    src = (ROOT / "examples" / "softcap_seed.py").read_text()
    probe = tmp_path / "k.py"
    probe.write_text(src + f"\n_TARGET_TEXT = open({str(SOFTCAP.resolve())!r}).read()\n")
    res = evaluate(probe, str(SOFTCAP), "smoke", EvalOptions(seed=3, static_check=False))
    assert not res.ok and res.failure.cls == "forbidden" and "target file" in res.failure.message
    res = evaluate(probe, str(SOFTCAP), "smoke", EvalOptions(seed=3))  # static check: open()
    assert not res.ok and res.failure.cls == "forbidden"
    # nor import the target module (or the built-in decode target and its reference)
    probe.write_text(src + "\nfrom evaluator.targets import decode as _d\n")
    for static in (True, False):
        res = evaluate(probe, str(SOFTCAP), "smoke", EvalOptions(seed=3, static_check=static))
        assert not res.ok and res.failure.cls == "forbidden", (static, res.failure)


# ---- malformed target files ----------------------------------------------------------------

_GOOD = SOFTCAP.read_text()


@pytest.mark.parametrize("edit,needle", [
    (lambda s: s.replace("def reference(", "def _reference("), "missing reference"),
    (lambda s: s.replace('NAME = "softcap"', 'NAME = "soft cap!"'), "NAME"),
    (lambda s: s.replace("SUITES = {", 'SUITES = {"x": (), '), "suite 'x' is empty"),
    (lambda s: s + "\nraise RuntimeError('boom')\n", "failed to load: RuntimeError"),
    (lambda s: s.replace('BASELINES = {"cuda": {"flex": _flex}, "cpu": {"torch-cpu": _torch_fp32}}',
                         'BASELINES = {"cuda": {"flex": _flex}}'), "BASELINES"),
    # wrong types and values: a TargetError naming the attribute, never a traceback
    (lambda s: s + "\nKINDS = 5\n", "KINDS"),
    (lambda s: s + "\nSUITES = {'smoke': 5}\n", "suite 'smoke'"),
    (lambda s: s + "\nVALIDATION = {**VALIDATION, 'cpu': 5}\n", "VALIDATION"),
    (lambda s: s + "\nVALIDATION = {**VALIDATION, 'quick': 5}\n", "VALIDATION"),
    (lambda s: s + "\nTOLERANCE = 5\n", "TOLERANCE"),
    (lambda s: s + "\nTOLERANCE = {'max_ratio': 2.0, 'bogus': 1}\n", "TOLERANCE"),
    (lambda s: s + "\nBASELINES = {'cpu': [1]}\n", "BASELINES"),
    (lambda s: s + "\nBASELINES = {'cpu': {'x': 1}}\n", "BASELINES"),
    (lambda s: s + "\nraise SystemExit(3)\n", "failed to load: SystemExit"),
    (lambda s: s + "\ndef __getattr__(name):\n    raise RuntimeError(name)\n", "RuntimeError"),
    # shapes the plan cannot carry (it holds Shape.to_dict(), rebuilt by Shape.from_dict)
    (lambda s: s.replace('_s(1, 4, 1, 64, 64, False, "float16")', '_s(1, 4, 1, 64, 64, False, "fp8")'), "dtype"),
    (lambda s: s + "\nShape.to_dict = lambda self: {'B': {1, 2}}\n", "to_dict"),
    (lambda s: s + "\nShape.from_dict = classmethod(lambda cls, d: None)\n", "from_dict"),
])
def test_malformed_target_file_raises_one_line(tmp_path, edit, needle):
    p = tmp_path / "t.py"
    p.write_text(edit(_GOOD))
    with pytest.raises(TargetError) as info:
        get_target(str(p))
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and str(p.name) in msg


def test_unreadable_target_file_raises_one_line(tmp_path):
    p = tmp_path / "t.py"
    p.write_bytes(b"NAME = '\\xff'\n\xff\xfe\n")  # not UTF-8
    with pytest.raises(TargetError) as info:
        get_target(str(p))
    assert "cannot read target file" in str(info.value) and "\n" not in str(info.value)


def test_cli_targets_lists_three_and_refuses_a_malformed_file(tmp_path):
    r = _cli("targets")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["gqa", "mha", "decode"]
    assert all(len(ln) <= 80 for ln in lines)
    r = _cli("targets", str(SOFTCAP))
    assert r.returncode == 0 and "softcap=30.0" in r.stdout
    assert all(len(ln) <= 80 for ln in r.stdout.splitlines())
    bad = tmp_path / "bad_target.py"
    bad.write_text("NAME = 'x'\n")
    for args in (("targets", str(bad)), ("eval", "seeds/decode.py", "--target", str(bad)),
                 ("start", "--target", str(bad), "--runs-dir", str(tmp_path / "runs"))):
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and "is missing DESCRIPTION" in err[0], (args, r.stderr)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    with pytest.raises(UnknownTarget):
        get_target("no_such_target")
    assert [t.name for t in list_targets()] == ["gqa", "mha", "decode"]


# ---- evolve start on CPU --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("target", ["decode", "softcap"])
def test_evolve_start_runs_on_cpu(tmp_path, target):
    """`evolve start --target decode` and `--target examples/softcap_target.py` (default
    seeds: seeds/decode.py, the file's SEED) with the offline operator, 2 candidates."""
    arg = "decode" if target == "decode" else str(SOFTCAP)
    runs = tmp_path / "runs"
    r = _cli("start", "--target", arg, "--operator", "offline", "--max-candidates", "2",
             "--runs-dir", str(runs), "--name", "r", "--rng-seed", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from evolve.run import RunHandle

    run = RunHandle.open(runs / "r")
    cands = run.store.candidates()
    assert len(cands) == 2 and cands[0].ok, [(c.status, c.failure_message) for c in cands]
    assert run.config.target == (arg if target == "decode" else str(SOFTCAP.resolve()))
    assert cands[0].evaluation.target == target
    seed = "seeds/decode.py" if target == "decode" else "examples/softcap_seed.py"
    assert run.config.seed_file == str((ROOT / seed).resolve())
    # best, the dashboard's data and export work for any target
    r = _cli("best", "r", "--runs-dir", str(runs))
    assert r.returncode == 0 and "candidate #" in r.stdout, r.stderr
    from dashboard.data import load_run

    data = load_run(runs / "r")
    assert len(data.shapes) >= 2 and data.primary_baseline in ("best", "torch-cpu")
    out = tmp_path / "exported.py"
    r = _cli("export", "r", "--runs-dir", str(runs), "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    text = out.read_text()
    assert "CONTRACT = " in text and "def attention(*args, **kwargs):" in text
    use = f"""
import importlib.util, sys
from evaluator import get_target
from evaluator.correctness import compare
t = get_target({arg!r})
spec = importlib.util.spec_from_file_location("exported", {str(out)!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
assert m.TARGET == t.name and m.CONTRACT == t.contract
sh = t.suite("smoke")[1]
c = t.make_inputs(sh, 9, t.kinds[0], "cpu")
st = compare(m.attention(*c.args, **c.kwargs), t.reference(c, sh), t.lowp(c, sh), sh.dtype)
assert st.ok, st.message
print("exported ok")
"""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", use], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert p.returncode == 0 and "exported ok" in p.stdout, p.stderr[-3000:]


def test_score_against_the_fastest_baseline_per_shape():
    """decode scores against the fastest baseline of each shape (per pass too)."""
    from evaluator import assemble

    t = get_target("decode")
    shapes = t.suite("smoke")
    plan = {"passes": 2, "timed": [{"idx": i, "shape": s.to_dict(), "name": s.name}
                                   for i, s in enumerate(shapes)]}
    base = {0: {"sdpa": [2.0, 2.2], "flex": [1.0, 3.0]}, 1: {"sdpa": [4.0, 4.0], "flex": [None, None]}}
    assert assemble.pick_primary(base, ["sdpa", "flex"], "best") == "best"
    assert assemble.pick_primary(base, ["sdpa", "flex"]) == "sdpa"  # flex misses a shape
    cand = {0: [1.0, 1.0], 1: [2.0, 2.0]}
    rows, per_pass = assemble.build_shapes(t, plan, cand, base, "best", {}, None, "interpreter")
    assert [r.baseline_ms for r in rows] == [2.0, 4.0]  # min of the medians (flex 2.0 < sdpa 2.1)
    assert [r.speedup for r in rows] == [2.0, 2.0]
    assert per_pass[0] == pytest.approx((1.0 * 2.0) ** 0.5) and per_pass[1] == pytest.approx((2.2 * 2.0) ** 0.5)
    assert rows[0].S == shapes[0].S and rows[1].causal  # Sq = 4 reads as causal


def test_decode_benchmark_script_dry_run_on_cpu(tmp_path):
    """benchmarks/gpu/decode_bench.py (run.sh decode) end to end on the interpreter: it
    times the seeds beside the target's CPU baseline and writes the summary."""
    out = tmp_path / "decode.json"
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "benchmarks/gpu/decode_bench.py", "--device", "cpu",
                        "--suite", "smoke", "--skip-check", "--json", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    data = json.loads(out.read_text())
    assert data["baselines_ran"] == ["sdpa-cpu"]
    assert set(data["summary"]) == {"decode_naive", "decode"}
    assert all(v["shapes"] == 2 for v in data["summary"].values())
