"""Where does a default-suite evaluation spend its time? Compile vs run, serial vs threads.

Usage (GPU): python benchmarks/gpu/profile_compile.py KERNEL.py MODE
MODE: serial   -- call every validation + default-suite shape once (cold Triton cache),
                  report first-call (compile) and second-call time per shape;
      threads:N -- discover the specialisations with Triton's jit_cache_hook (no compile,
                  no launch), compile them in N threads with AsyncCompileMode, then call
                  every shape once and report how many still compiled.
Each mode must run in a fresh process with an empty TRITON_CACHE_DIR.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def load(path):
    spec = importlib.util.spec_from_file_location("cand", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shapes():
    from evaluator.targets import get_target

    t = get_target("gqa")
    return t.validation_shapes("cuda") + t.suite("default")


def inputs(s, empty=False):
    import torch

    dt = getattr(torch, s.dtype)
    mk = torch.empty if empty else torch.randn
    q = mk(s.B, s.Hq, s.S, s.D, device="cuda", dtype=dt)
    k = mk(s.B, s.Hkv, s.S, s.D, device="cuda", dtype=dt)
    v = mk(s.B, s.Hkv, s.S, s.D, device="cuda", dtype=dt)
    if getattr(s, "layout", "bhsd") == "bshd":
        q, k, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v))
    return q, k, v


def call(mod, s, empty=False):
    import torch

    q, k, v = inputs(s, empty)
    kw = {} if s.sm_scale is None else {"sm_scale": s.sm_scale}
    torch.cuda.synchronize()
    t = time.perf_counter()
    mod.attention(q, k, v, causal=s.causal, **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t


def serial(mod):
    rows = []
    t0 = time.perf_counter()
    for s in shapes():
        a = call(mod, s)
        b = call(mod, s)
        rows.append({"shape": s.name, "first_s": round(a, 3), "second_s": round(b, 4)})
    total = time.perf_counter() - t0
    return {"mode": "serial", "total_s": round(total, 2),
            "compile_like_s": round(sum(r["first_s"] - r["second_s"] for r in rows), 2),
            "rows": rows}


def threaded(mod, n):
    from triton import knobs
    from triton.runtime._async_compile import AsyncCompileMode

    found = {}

    def hook(*, key, repr, fn, compile, is_manual_warmup, already_compiled):
        found[(id(fn.jit_function), str(key))] = (fn.jit_function, compile["specialization_data"])
        return True  # skip compile and launch

    t0 = time.perf_counter()
    knobs.runtime.jit_cache_hook = hook
    try:
        for s in shapes():
            call(mod, s, empty=True)
    finally:
        knobs.runtime.jit_cache_hook = None
    t1 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool, AsyncCompileMode(pool):
        for jf, data in found.values():
            jf.preload(data)
    t2 = time.perf_counter()
    still = 0
    for s in shapes():
        if call(mod, s) > 0.3:
            still += 1
    t3 = time.perf_counter()
    return {"mode": f"threads:{n}", "specialisations": len(found), "discover_s": round(t1 - t0, 2),
            "compile_s": round(t2 - t1, 2), "run_all_s": round(t3 - t2, 2),
            "shapes_still_slow": still}


def main():
    path, mode = sys.argv[1], sys.argv[2]
    t = time.perf_counter()
    import torch  # noqa: F401

    mod = load(path)
    t_imp = time.perf_counter() - t
    out = serial(mod) if mode == "serial" else threaded(mod, int(mode.split(":")[1]))
    out["import_s"] = round(t_imp, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
