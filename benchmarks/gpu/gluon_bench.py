"""Correctness sweep and config timing for Gluon kernels on a GPU (trusted code, issue 20).

    python benchmarks/gpu/gluon_bench.py check KERNEL.py [KERNEL.py ...] [--config JSON] [--out DIR]
    python benchmarks/gpu/gluon_bench.py sweep KERNEL.py --configs '[{"D128_NC": {"STAGES": 3}}, ...]'
                                         [--shapes default|quick] [--out DIR]

``check``: every GPU validation shape of the gqa target (the covering set and the quick
set) in bf16 AND fp16, each with the evaluator's input kinds (gaussian, large_rows,
needle, near_const_v), compared on all rows with the evaluator's error rule
(evaluator/correctness.py against evaluator/reference.py). Prints one line per case and a
summary; exit 1 when any case fails.

``sweep``: the kernel with each CONFIG override in turn (the module's CONFIG dict is
updated in place), timed with the evaluator's protocol (evaluator/timing.py) on the suite
shapes, interleaved with SDPA-cuDNN shape by shape; prints TFLOP/s and the ratio to cuDNN
per config (geomean). For tuning only: the committed numbers come from
benchmarks/compare.py and ``evolve eval``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_util as bu  # noqa: E402  (puts the repo root on sys.path)

KINDS = ("gaussian", "large_rows", "needle", "near_const_v")


def _cases(target):
    from evaluator.targets import Shape

    # the validation sets, plus the small head dims the contract also allows (D 16 / 32,
    # e.g. tests/guard_harness.py uses D=32)
    extra = [Shape(1, 4, 2, 40, 32, False), Shape(2, 4, 1, 129, 32, True),
             Shape(1, 4, 4, 77, 16, True), Shape(1, 2, 1, 200, 16, False)]
    shapes = list(dict.fromkeys([*target.gpu_validation, *target.quick_validation, *extra]))
    out = []
    for s in shapes:
        other = "float16" if s.dtype == "bfloat16" else "bfloat16"
        out += [s, replace(s, dtype=other)]
    return out


def check(paths: list[Path], out_dir: Path | None, config: dict | None = None) -> int:
    import torch

    from evaluator import correctness, inputs, reference, targets

    target = targets.get_target("gqa")
    cases = _cases(target)
    failed = 0
    rows = []
    for path in paths:
        mod = bu.load_kernel(path)
        if config:   # checks a CONFIG variant (e.g. before making it the default)
            mod.CONFIG.update(bu.with_overrides(mod.CONFIG, config))
        worst = 0.0
        for i, shape in enumerate(cases):
            for kind in KINDS:
                q, k, v = inputs.make_inputs(shape, 1000 + i, kind, "cuda")
                kw = {} if shape.sm_scale is None else {"sm_scale": shape.sm_scale}
                t0 = time.perf_counter()
                try:
                    out = mod.attention(q, k, v, causal=shape.causal, **kw)
                    torch.cuda.synchronize()
                except Exception as exc:  # noqa: BLE001 - report every case
                    msg = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
                    print(f"FAIL {path.name} {shape.name} {kind}: {msg}", flush=True)
                    failed += 1
                    rows.append({"kernel": path.name, "shape": shape.name, "kind": kind, "ok": False,
                                 "message": msg})
                    continue
                dt = time.perf_counter() - t0
                ref = reference.reference(q, k, v, causal=shape.causal, sm_scale=shape.scale)
                lowp = reference.torch_lowp(q, k, v, causal=shape.causal, sm_scale=shape.scale)
                st = correctness.compare(out, ref, lowp, shape.dtype)
                worst = max(worst, st.ratio)
                failed += not st.ok
                tag = "ok  " if st.ok else "FAIL"
                print(f"{tag} {path.name} {shape.name:62s} {kind:12s} err {st.max_err:.2e} "
                      f"ratio {st.ratio:.2f} ({dt * 1e3:.0f} ms){'' if st.ok else ' ' + st.message}",
                      flush=True)
                rows.append({"kernel": path.name, "shape": shape.name, "kind": kind, "ok": st.ok,
                             "max_err": st.max_err, "ratio": st.ratio, "message": st.message})
        print(f"== {path.name}: {len(cases) * len(KINDS)} cases, worst error ratio {worst:.2f}, "
              f"failed {sum(not r['ok'] for r in rows if r['kernel'] == path.name)}", flush=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "check.json").write_text(json.dumps({"gpu": torch.cuda.get_device_name(),
                                                        "cases": rows}, indent=1))
    return 1 if failed else 0


def sweep(path: Path, configs: list[dict], suite: str, rounds: int, out_dir: Path | None) -> int:
    import torch

    from evaluator import baselines, inputs, targets, timing

    shapes = targets.get_target("gqa").suite(suite)
    mod = bu.load_kernel(path)
    base_cfg = dict(mod.CONFIG)
    params = timing.TimingParams.for_device("cuda")
    cudnn = baselines.get_baseline("cudnn")

    def run_with(cfg):
        def fn(q, k, v, **kw):
            mod.CONFIG.clear()
            mod.CONFIG.update(bu.with_overrides(base_cfg, cfg))
            return mod.attention(q, k, v, **kw)
        return fn

    cont = [("cudnn", cudnn)] + [(json.dumps(c) or "{}", run_with(c)) for c in configs]
    ms: dict[str, dict[str, float | None]] = {name: {} for name, _ in cont}
    for si, shape in enumerate(shapes):
        def make(n, shape=shape, si=si):
            return inputs.make_inputs(shape, inputs.derive_seed(7, si, n), "gaussian", "cuda")
        runs: dict[str, list[float]] = {name: [] for name, _ in cont}
        for r in range(rounds):
            for j in range(len(cont)):
                name, fn = cont[(r + j) % len(cont)]
                if runs[name] is None:
                    continue
                try:
                    runs[name].append(timing.time_call(fn, make, causal=shape.causal, kwargs={},
                                                       params=params, device="cuda").ms)
                except Exception as exc:  # noqa: BLE001 - a config may not compile / fit
                    print(f"  ERROR {name} {shape.name}: {type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0][:200]}", flush=True)
                    runs[name] = None
        line = [f"{shape.name:48s}"]
        for name, _ in cont:
            ms[name][shape.name] = statistics.median(runs[name]) if runs[name] else None
            tf = bu.tflops(shape.flops(), ms[name][shape.name])
            line.append(bu.fmt(tf))
        print("  ".join(line), flush=True)
    summary = []
    for name, _ in cont:
        ratios = [bu.tflops(s.flops(), ms[name][s.name]) / bu.tflops(s.flops(), ms["cudnn"][s.name])
                  if ms[name].get(s.name) and ms["cudnn"].get(s.name) else None for s in shapes]
        g = bu.geomean(ratios)
        summary.append({"config": name, "geomean_vs_cudnn": g, "ratios": ratios})
        print(f"{bu.fmt(g, '.3f')} x cuDNN  {name}", flush=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "sweep.json").write_text(json.dumps({
            "gpu": torch.cuda.get_device_name(), "kernel": str(path), "suite": suite,
            "shapes": [s.name for s in shapes], "ms": ms, "summary": summary}, indent=1))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("kernels", nargs="+", type=Path)
    c.add_argument("--out", type=Path)
    c.add_argument("--config", default="{}", help="JSON dict of CONFIG overrides")
    s = sub.add_parser("sweep")
    s.add_argument("kernel", type=Path)
    s.add_argument("--configs", default="[{}]")
    s.add_argument("--suite", default="default")
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "check":
        return check(a.kernels, a.out, json.loads(a.config))
    return sweep(a.kernel, json.loads(a.configs), a.suite, a.rounds, a.out)


if __name__ == "__main__":
    sys.exit(main())
