"""Run in a fresh process by tests/test_export.py: import an exported module by path
(evolve/evaluator made unimportable) and report its behaviour as JSON on stdout.

usage: python export_probe.py MODULE.py {kernel|nointerp|guard SCRATCH}"""

import importlib.util
import json
import sys
import warnings

sys.modules["evolve"] = None  # the exported module must need only torch and triton
if sys.argv[2] != "guard":  # (guard mode imports the evaluator's runtime guard itself)
    sys.modules["evaluator"] = None

import torch  # noqa: E402

F = torch.nn.functional


def load(path):
    """Import the module as a user would: its folder on sys.path, then `import NAME`."""
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    return importlib.import_module(os.path.basename(path)[:-3])


def rand(B, H, S, D, dtype=torch.float16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, S, D, generator=g).to(dtype)


def ref(q, k, v, causal, scale=None):
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal,
                                          scale=scale, enable_gqa=True)


def err_of(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return [type(e).__name__, str(e), [c.__name__ for c in type(e).__mro__]]
    return None


def kernel_mode(mod):
    out = {"op": str(mod.attention_op)}
    # shapes outside the suites: odd S, group sizes 3, 1 and 8, a custom scale
    cases = [(1, 6, 2, 45, 64, False, None), (2, 3, 3, 19, 64, True, None),
             (1, 8, 1, 7, 128, True, 0.37)]
    errs = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")  # the in-envelope path must not warn about a fallback
        for i, (B, Hq, Hkv, S, D, c, sc) in enumerate(cases):
            q, k, v = rand(B, Hq, S, D, seed=i), rand(B, Hkv, S, D, seed=10 + i), rand(B, Hkv, S, D, seed=20 + i)
            o = mod.attention(q, k, v, causal=c, sm_scale=sc, strict=True)
            errs.append([list(o.shape), str(o.dtype), (o.float() - ref(q, k, v, c, sc)).abs().max().item()])
    out["outside_suites"] = errs
    out["in_envelope_warnings"] = [str(x.message) for x in w if "envelope" in str(x.message)]
    # non-contiguous input (a [B, S, H, D] tensor viewed as [B, H, S, D]); inputs unchanged
    q = rand(1, 33, 4, 64, seed=1).transpose(1, 2)
    k = rand(1, 33, 2, 64, seed=2).transpose(1, 2)
    v = rand(1, 33, 2, 64, seed=3).transpose(1, 2)
    before = [t.clone() for t in (q, k, v)]
    o = mod.attention(q, k, v, causal=True, strict=True)
    out["noncontig"] = [(o.float() - ref(q, k, v, True)).abs().max().item(),
                        all(torch.equal(a, b) for a, b in zip(before, (q, k, v)))]
    # torch.compile: the graph holds the custom op
    q, k, v = rand(1, 4, 40, 64, seed=4), rand(1, 2, 40, 64, seed=5), rand(1, 2, 40, 64, seed=6)
    graphs = []

    def record(gm, example_inputs):
        graphs.append([str(n.target) for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    def fn(q, k, v):
        return mod.attention(q, k, v, causal=True) * 2.0

    r = ref(q, k, v, True)
    res = {}
    for name, backend in (("record", record), ("aot_eager", "aot_eager")):
        torch._dynamo.reset()
        o = torch.compile(fn, backend=backend, fullgraph=True)(q, k, v)
        res[name] = (o.float() / 2 - r).abs().max().item()
    out["compile"] = {"errors": res, "graph": graphs[0] if graphs else []}
    torch._dynamo.reset()
    # fallback: fp32 (dtype), D=32 (head dim), autograd; one warning per reason
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        q32, k32, v32 = rand(1, 4, 20, 64, torch.float32), rand(1, 2, 20, 64, torch.float32, 1), rand(1, 2, 20, 64, torch.float32, 2)
        a = mod.attention(q32, k32, v32, causal=True)
        b = mod.attention(q32, k32, v32, causal=True)
        fb_err = (a - ref(q32, k32, v32, True)).abs().max().item()
        q16, k16, v16 = rand(1, 2, 9, 32), rand(1, 1, 9, 32, seed=1), rand(1, 1, 9, 32, seed=2)
        d_err = (mod.attention(q16, k16, v16).float() - ref(q16, k16, v16, False)).abs().max().item()
        qg = rand(1, 2, 9, 64, torch.float32).requires_grad_()
        mod.attention(qg, rand(1, 1, 9, 64, torch.float32, 1), rand(1, 1, 9, 64, torch.float32, 2)).sum().backward()
        out["fallback"] = {"warnings": [[x.category.__name__, str(x.message)] for x in w],
                           "fp32_err": fb_err, "fp32_same": torch.equal(a, b), "d32_err": d_err,
                           "grad": qg.grad is not None and bool(torch.isfinite(qg.grad).all())}
    out["strict"] = {
        "fp32": err_of(lambda: mod.attention(q32, k32, v32, strict=True)),
        "d32": err_of(lambda: mod.attention(q16, k16, v16, strict=True)),
        "sk_ne_sq": err_of(lambda: mod.attention(rand(1, 2, 9, 64), rand(1, 1, 12, 64), rand(1, 1, 12, 64), strict=True)),
    }
    q, k, v = rand(1, 4, 8, 64), rand(1, 2, 8, 64), rand(1, 2, 8, 64)
    out["bad"] = {
        "rank3": err_of(lambda: mod.attention(q[0], k[0], v[0])),
        "heads": err_of(lambda: mod.attention(rand(1, 5, 8, 64), k, v)),
        "dtype_mix": err_of(lambda: mod.attention(q, k.float(), v)),
        "int": err_of(lambda: mod.attention(q.to(torch.int32), k.to(torch.int32), v.to(torch.int32))),
        "causal_str": err_of(lambda: mod.attention(q, k, v, causal="yes")),
        "not_tensor": err_of(lambda: mod.attention([1.0], k, v)),
        "kv_shape": err_of(lambda: mod.attention(q, k, rand(1, 2, 8, 32))),
        "scale_nan": err_of(lambda: mod.attention(q, k, v, sm_scale=float("nan"))),
    }
    return out


def nointerp_mode(mod):
    q, k, v = rand(1, 4, 8, 64), rand(1, 2, 8, 64), rand(1, 2, 8, 64)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        o = mod.attention(q, k, v, causal=True)
    import contextlib
    import io

    cli = {}
    for flag in ("--bench", "--provenance"):  # the module's own command line, in this process
        so, se = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
            rc = mod._main([flag])
        cli[flag] = [rc, so.getvalue(), se.getvalue()]
    return {"err": (o.float() - ref(q, k, v, True)).abs().max().item(),
            "warnings": [str(x.message) for x in w],
            "strict": err_of(lambda: mod.attention(q, k, v, strict=True)), "cli": cli}


def guard_mode(path, scratch):
    from pathlib import Path

    from evaluator import guard

    guard.install(scratch_dir=Path(scratch), candidate_path=Path(path))
    mod = load(path)
    q, k, v = rand(1, 2, 16, 64), rand(1, 1, 16, 64, seed=1), rand(1, 1, 16, 64, seed=2)
    o = mod.attention(q, k, v, causal=True)
    return {"op": str(mod.attention_op), "shape": list(o.shape), "integrity": guard.check_integrity()}


if __name__ == "__main__":
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "guard":
        result = guard_mode(path, sys.argv[3])
    else:
        m = load(path)
        result = kernel_mode(m) if mode == "kernel" else nointerp_mode(m)
    print("PROBE " + json.dumps(result))
