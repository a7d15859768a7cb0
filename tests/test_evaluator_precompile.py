"""The CPU-testable parts of the worker's GPU precompile stage (evaluator/precompile.py):
hook discovery and restore, the autotuner one-call benchmark and cache reset, the compile
thread pool's lifecycle, and the pool under the runtime guard (fake compile jobs; the
interpreter has nothing to compile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import triton
import triton.language as tl

from evaluator import precompile

ROOT = Path(__file__).resolve().parent.parent


# ---- precompile pieces ---------------------------------------------------------------------

class _Info:
    def __init__(self, jf):
        self.jit_function = jf


def test_discovery_records_restores_hook_and_disarms():
    knobs = precompile._runtime_knobs()

    def prev(**kw):
        return None

    knobs.jit_cache_hook = prev
    try:
        assert precompile.hook_is_set()
        rec = precompile.Recorder(max_specs=2)
        jf = object()

        def call():
            hook = knobs.jit_cache_hook
            assert hook is rec
            for i in range(3):
                assert hook(key=i, repr="", fn=_Info(jf), compile={"specialization_data": f"d{i}"},
                            is_manual_warmup=False, already_compiled=False) is True

        def boom():
            raise SystemExit(3)

        specs = precompile.discover([call, boom, call], rec, time.monotonic() + 30)
        assert [s.data for s in specs] == ["d0", "d1"]  # max_specs
        assert knobs.jit_cache_hook is prev  # restored whatever happened
        assert rec(key=9, fn=_Info(jf), compile={"specialization_data": "x"}) is None  # disarmed
        knobs.jit_cache_hook = None
        assert not precompile.hook_is_set()

        def broken_calls():
            yield call_ok
            raise RuntimeError("the call list itself broke")

        def call_ok():
            assert knobs.jit_cache_hook is not None

        with pytest.raises(RuntimeError):
            precompile.discover(broken_calls(), precompile.Recorder(4), time.monotonic() + 30)
        assert knobs.jit_cache_hook is None  # restored on the way out
    finally:
        knobs.jit_cache_hook = None


def test_preload_only_calls_triton_jit_functions():
    called = []

    class Fake:
        def preload(self, data):
            called.append(data)

    with pytest.raises(TypeError):
        precompile.preload(precompile.Spec(Fake(), "{}"))
    assert called == []


def _fake_job(log: list[str], done: list, sleep: float = 0.05):
    from triton.runtime._async_compile import active_mode

    def job(spec):
        def compile_fn():
            log.append(threading.current_thread().name)
            time.sleep(sleep)
            return spec.data
        return active_mode.get().submit(spec.data, compile_fn, done.append)
    return job


def test_compile_pool_lifecycle_and_deadline():
    before = threading.active_count()
    names: list[str] = []
    done: list = []
    specs = [precompile.Spec(None, f"k{i}") for i in range(12)]
    compiled, failed = precompile.compile_all(specs, threads=4, deadline=time.monotonic() + 60,
                                              job=_fake_job(names, done))
    assert (compiled, failed) == (12, 0) and sorted(done) == sorted(s.data for s in specs)
    assert len(set(names)) > 1 and all(n.startswith("evaluator-precompile") for n in names)
    assert threading.active_count() == before  # the pool is gone
    t0 = time.monotonic()
    done2: list = []
    compiled, failed = precompile.compile_all([precompile.Spec(None, f"s{i}") for i in range(40)],
                                              threads=2, deadline=time.monotonic() + 0.3,
                                              job=_fake_job([], done2, sleep=0.2))
    assert time.monotonic() - t0 < 5 and compiled == len(done2) < 40
    assert threading.active_count() == before


@triton.autotune(configs=[triton.Config({"BLOCK": 16}), triton.Config({"BLOCK": 32})], key=["n"])
@triton.jit
def _count_kernel(X, n, BLOCK: tl.constexpr):
    tl.store(X, tl.load(X) + 1)


_wrapped = triton.heuristics({"UNUSED": lambda args: 1})(_count_kernel)


def test_autotuners_found_benched_once_and_reset():
    import torch

    ns = {"k": _wrapped, "other": 3, "plain": _count_kernel.fn}
    found = precompile.find_autotuners([ns])
    assert found == [_count_kernel]
    x = torch.zeros(1, dtype=torch.float32)
    _count_kernel.cache_results = True

    def call():
        _count_kernel[(1,)](x, 7)

    stats = precompile.run([call], [ns], threads=2, max_specs=8, limit_s=60)
    assert stats.found == 0  # the interpreter compiles nothing
    assert x.item() == 3  # 2 configs benchmarked with one launch each, then the chosen one
    assert _count_kernel.cache == {} and "do_bench" not in vars(_count_kernel)
    assert _count_kernel.cache_results is True
    assert "precompile: 0 specialisations in" in stats.line()


GUARD_POOL = textwrap.dedent('''
    import json, os, sys, threading, time
    sys.path.insert(0, sys.argv[2])
    os.environ["TRITON_INTERPRET"] = "1"
    import torch, triton
    from evaluator import guard, precompile
    from triton.runtime._async_compile import active_mode
    scratch = os.path.realpath(sys.argv[1])
    cand = os.path.join(scratch, "cand.py")
    src = "import threading\\ndef evil():\\n    threading.Thread(target=print).start()\\n"
    open(cand, "w").write(src)
    ns = {}
    exec(compile(src, cand, "exec"), ns)
    precompile.preimport_kernel_libraries()
    before = threading.active_count()
    guard.install(scratch_dir=scratch, candidate_path=cand)
    names, done = [], []
    def job(spec):
        def compile_fn():
            names.append(threading.current_thread().name)
            time.sleep(0.05)
            if spec.data == "evil":
                ns["evil"]()  # candidate code on a pool thread starts a thread
            return spec.data
        return active_mode.get().submit(spec.data, compile_fn, done.append)
    r = {"before": before}
    c, f = precompile.compile_all([precompile.Spec(None, f"k{i}") for i in range(8)], threads=4,
                                  deadline=time.monotonic() + 60, job=job)
    r.update(compiled=c, failed=f, threads=len(set(names)), after=threading.active_count(),
             integrity=guard.check_integrity())
    c, f = precompile.compile_all([precompile.Spec(None, "evil")], threads=2,
                                  deadline=time.monotonic() + 60, job=job)
    r.update(evil_failed=f, after2=threading.active_count(), integrity2=guard.check_integrity())
    print(json.dumps(r))
''')


def test_compile_pool_under_the_guard(tmp_path):
    """Trusted code may start the pool after guard.install; the threads are gone afterwards
    (the guard's count check passes); candidate code on a pool thread cannot start one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    r = subprocess.run([sys.executable, "-I", "-c", GUARD_POOL, str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["compiled"] == 8 and out["failed"] == 0 and out["threads"] > 1
    assert out["after"] == out["before"] and out["integrity"] is None
    assert out["evil_failed"] == 1 and out["after2"] == out["before"]
    assert out["integrity2"] and "thread start" in out["integrity2"]


FAKE_GPU = textwrap.dedent('''
    import importlib.util, json, os, shutil, sys, threading, time
    scratch = os.path.realpath(sys.argv[1])
    for d in ("cache", "tmp"):
        os.makedirs(os.path.join(scratch, d), exist_ok=True)
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.update(TRITON_CACHE_DIR=os.path.join(scratch, "cache"), HOME=scratch,
                      TMPDIR=os.path.join(scratch, "tmp"))
    sys.path.insert(0, sys.argv[2])
    import torch, triton
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    class FakeDriver:  # enough of a CUDA driver for Triton to specialise and compile (no launch)
        def get_current_device(self): return 0
        def get_current_stream(self, device=None): return 0
        def get_current_target(self): return GPUTarget("cuda", 90, 32)

    driver.set_active(FakeDriver())
    from evaluator import guard, precompile
    from evaluator.targets import Shape
    cand = os.path.join(scratch, "kernel_0.py")
    shutil.copy(os.path.join(sys.argv[2], "tests", "candidates", "honest.py"), cand)
    precompile.preimport_kernel_libraries()  # the worker's order: libraries, guard, candidate
    before = threading.active_count()
    guard.install(scratch_dir=scratch, candidate_path=cand)
    spec = importlib.util.spec_from_file_location("candidate_0", cand)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    def call(s):
        q, k, v = precompile.empty_inputs(s, "cpu")
        mod.attention(q, k, v, causal=s.causal)
    shapes = [Shape(1, 4, 2, 100, 64, True), Shape(1, 4, 1, 64, 128, False, "float16", layout="bshd")]
    calls = [lambda s=s: call(s) for s in shapes] * 2
    st = precompile.run(calls, [vars(mod)], threads=2, max_specs=256, limit_s=600)
    again = precompile.discover(calls, precompile.Recorder(8), time.monotonic() + 60)
    print(json.dumps({"line": st.line(), "found": st.found, "compiled": st.compiled,
                      "failed": st.failed, "after": threading.active_count(), "before": before,
                      "integrity": guard.check_integrity(), "again": len(again),
                      "hook": precompile.hook_is_set()}))
''')


def test_real_discovery_and_parallel_compile_under_the_guard(tmp_path):
    """The GPU path with a fake CUDA driver: Triton specialises the honest kernel (sm_90),
    the trusted hook records without compiling, the pool compiles with Triton's bundled
    ptxas under the runtime guard; afterwards nothing is left to compile, no thread is
    left, the hook is unset and the guard saw nothing."""
    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").is_file():
        pytest.skip("this Triton wheel has no bundled ptxas")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    r = subprocess.run([sys.executable, "-I", "-c", FAKE_GPU, str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["found"] == 2 and out["compiled"] == 2 and out["failed"] == 0, out
    assert out["again"] == 0, out  # every specialisation is in the kernel caches now
    assert out["after"] == out["before"] and out["integrity"] is None and not out["hook"], out
    assert "precompile: 2 specialisations in" in out["line"]
