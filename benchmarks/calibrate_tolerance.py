"""Calibrate the correctness rule on a GPU (run by hand; trusted code only).

For every validation shape of a target (the GPU covering set), each input kind and both
bf16 and fp16, this prints PyTorch's same-dtype error (SDPA MATH backend) against the
fp32 reference, the error of a kernel file (default: seeds/gqa.py), their ratio, and the
relative-L2 errors, then a summary per dtype and kind. The rule in evaluator/correctness.py
accepts ``err <= 2 * torch_err + floor`` (floor = 1 ulp of the output scale); a healthy
honest kernel should sit well below a ratio of 2.

    python benchmarks/calibrate_tolerance.py [--kernel seeds/gqa.py] [--target gqa] [--json out.json]

Without CUDA it runs the interpreter's tiny validation set in fp16 (slow, CPU only).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location("calibrated_kernel", str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.attention


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default=str(ROOT / "seeds" / "gqa.py"))
    ap.add_argument("--target", default="gqa")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from evaluator.correctness import EPS, compare
    from evaluator.inputs import KINDS, derive_seed, make_inputs
    from evaluator.reference import reference, torch_lowp
    from evaluator import get_target

    torch.backends.cuda.matmul.allow_tf32 = False
    attention = _load(Path(args.kernel))
    dev = "cuda" if cuda else "cpu"
    dtypes = ("bfloat16", "float16") if cuda else ("float16",)
    rows = []
    print(f"{'shape':58s} {'kind':13s} {'torch_err':>10s} {'kern_err':>10s} {'ratio':>7s} "
          f"{'torch_rl2':>10s} {'kern_rl2':>10s} ok")
    for base in get_target(args.target).validation_shapes(dev):
        for dt in dtypes:
            shape = replace(base, dtype=dt)
            for kind in KINDS:
                q, k, v = make_inputs(shape, derive_seed(args.seed, shape.name, kind), kind, dev)
                kw = {} if shape.sm_scale is None else {"sm_scale": shape.sm_scale}
                out = attention(q, k, v, causal=shape.causal, **kw)
                ref = reference(q, k, v, causal=shape.causal, sm_scale=shape.scale)
                low = torch_lowp(q, k, v, causal=shape.causal, sm_scale=shape.scale)
                st = compare(out, ref, low, dt)
                floor = EPS[dt] * max(1.0, float(ref.abs().max()))
                raw = st.max_err / st.torch_err if st.torch_err > 0 else float("inf")
                rows.append({"shape": shape.name, "dtype": dt, "kind": kind, "torch_err": st.torch_err,
                             "kernel_err": st.max_err, "ratio_vs_torch": raw, "ratio_rule": st.ratio,
                             "torch_rel_l2": st.torch_rel_l2, "kernel_rel_l2": st.rel_l2,
                             "floor": floor, "ok": st.ok})
                print(f"{shape.name[:58]:58s} {kind:13s} {st.torch_err:10.3e} {st.max_err:10.3e} "
                      f"{raw:7.2f} {st.torch_rel_l2:10.3e} {st.rel_l2:10.3e} {'yes' if st.ok else 'NO'}")
    print("\nsummary (max over shapes): dtype kind  max ratio_vs_torch  max ratio_rule  failures")
    for dt in dtypes:
        for kind in KINDS:
            sel = [r for r in rows if r["dtype"] == dt and r["kind"] == kind]
            fin = [r["ratio_vs_torch"] for r in sel if r["ratio_vs_torch"] != float("inf")]
            print(f"  {dt:9s} {kind:13s} {max(fin) if fin else float('nan'):8.2f} "
                  f"{max(r['ratio_rule'] for r in sel):8.2f}  {sum(not r['ok'] for r in sel)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
