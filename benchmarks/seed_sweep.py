"""GPU sweep of the seed kernels: correctness on every validation shape, then tile configs.

    python benchmarks/seed_sweep.py OUT.json [--seeds gqa_naive.py,gqa.py,mha.py]
                                    [--no-flex] [--max-configs 6] [--kinds gaussian,large_rows]

(a) every seed on the target's GPU validation set in bf16 AND fp16, for several input
    kinds, against the evaluator's fp32 reference with the evaluator's error rule
    (PASS/FAIL + max error per shape);
(b) gqa.py and mha.py: a few alternative CONFIGs per (head dim, causal) class, each first
    checked for correctness on a ragged GQA shape, then timed with
    ``triton.testing.do_bench`` (median) on the target's default suite beside SDPA-cuDNN,
    SDPA-flash and FlexAttention (evaluator/baselines.py) in this process; prints the best
    CONFIG per class and a final table; the JSON is rewritten after every step, so a run
    cut short still leaves its numbers. One failing config/shape is reported and skipped.

Budget: FlexAttention compiles once per suite shape (~5-10 s each), so a full run can
exceed 5 minutes. Split it into calls, e.g.
    python benchmarks/seed_sweep.py benchmarks/results/sweep-check.json --no-tune
    python benchmarks/seed_sweep.py benchmarks/results/sweep-gqa.json --no-check --seeds gqa.py
    python benchmarks/seed_sweep.py benchmarks/results/sweep-mha.json --no-check --seeds mha.py
(add --no-flex to drop FlexAttention, --max-configs N to time only the first N variants).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import bench_util as bu  # noqa: E402  (puts the repo root on sys.path)
from evaluator import geomean  # noqa: E402

SEEDS_DIR = bu.REPO / "seeds"
TUNED = ("gqa.py", "mha.py")
CLASSES = ("D128_NC", "D128_C", "D64_NC", "D64_C")
# (label, BLOCK_M, BLOCK_N, WARPS, STAGES, extra switches); the first entry of a class is
# gqa.py's shipped default for that class, mha.py's is the first or the second.
VARIANTS = {
    "D128_NC": [("128x64 w4 s2 host", 128, 64, 4, 2, {"HOST_DESC": 1}),
                ("128x64 w4 s2 flat", 128, 64, 4, 2, {"FLAT": 1}),
                ("128x64 w4 s2", 128, 64, 4, 2, {}), ("128x64 w4 s3", 128, 64, 4, 3, {}),
                ("128x128 w8 s2", 128, 128, 8, 2, {}), ("64x64 w4 s3", 64, 64, 4, 3, {}),
                ("128x32 w4 s4", 128, 32, 4, 4, {}), ("128x64 w8 s2", 128, 64, 8, 2, {})],
    "D128_C": [("128x64 w4 s2 host", 128, 64, 4, 2, {"HOST_DESC": 1}),
               ("128x64 w4 s2", 128, 64, 4, 2, {}), ("128x64 w4 s3", 128, 64, 4, 3, {}),
               ("128x64 w4 s2 rev", 128, 64, 4, 2, {"REVERSE_M": 1}),
               ("128x64 w4 s2 flat", 128, 64, 4, 2, {"FLAT": 1}),
               ("64x64 w4 s3", 64, 64, 4, 3, {}), ("128x32 w4 s4", 128, 32, 4, 4, {}),
               ("128x64 w8 s2", 128, 64, 8, 2, {})],
    "D64_NC": [("64x64 w4 s4 flat host", 64, 64, 4, 4, {"FLAT": 1, "HOST_DESC": 1}),
               ("128x64 w4 s4 flat", 128, 64, 4, 4, {"FLAT": 1}),
               ("128x64 w4 s4", 128, 64, 4, 4, {}), ("128x64 w4 s3", 128, 64, 4, 3, {}),
               ("128x64 w4 s5", 128, 64, 4, 5, {}),
               ("64x64 w4 s4", 64, 64, 4, 4, {}), ("128x32 w4 s4", 128, 32, 4, 4, {}),
               ("128x64 w8 s3", 128, 64, 8, 3, {}),
               ("128x64 w4 s4 host", 128, 64, 4, 4, {"HOST_DESC": 1})],
    "D64_C": [("64x64 w4 s3 rev host", 64, 64, 4, 3, {"REVERSE_M": 1, "HOST_DESC": 1}),
              ("128x64 w4 s3 rev", 128, 64, 4, 3, {"REVERSE_M": 1}),
              ("128x64 w4 s3", 128, 64, 4, 3, {}), ("128x64 w4 s4", 128, 64, 4, 4, {}),
              ("64x64 w4 s4", 64, 64, 4, 4, {}), ("64x32 w4 s4", 64, 32, 4, 4, {}),
              ("128x64 w4 s3 flat", 128, 64, 4, 3, {"FLAT": 1}),
              ("128x64 w8 s3", 128, 64, 8, 3, {}),
              ("128x64 w4 s3 host", 128, 64, 4, 3, {"HOST_DESC": 1})],
}



def shape_class(shape) -> str:
    return ("D64" if shape.D <= 64 else "D128") + ("_C" if shape.causal else "_NC")


def apply_variant(config: dict, cls: str, variant) -> dict:
    _, bm, bn, warps, stages, extra = variant
    knobs = {"BLOCK_M": bm, "BLOCK_N": bn, "WARPS": warps, "STAGES": stages,
             "FLAT": extra.get("FLAT", 0), "HOST_DESC": extra.get("HOST_DESC", 0)}
    if cls.endswith("_C"):
        knobs["REVERSE_M"] = extra.get("REVERSE_M", 0)
    if all(isinstance(v, dict) for v in config.values()):  # per-class CONFIG (seeds/gqa.py)
        new = {c: dict(v) for c, v in config.items()}
        new[cls].update(knobs)
        return new
    return config | {f"{k}_{cls}": v for k, v in knobs.items()}


class Sweep:
    def __init__(self, out: Path, args):
        import torch

        from evaluator import baselines, correctness, inputs, reference, targets

        self.torch, self.bl, self.corr, self.inp, self.ref, self.tg = (
            torch, baselines, correctness, inputs, reference, targets)
        self.out, self.args = out, args
        self.data = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                     "correctness": [], "configs": {}, "baselines": {}, "best": {},
                     "suggested_config": {}, "errors": []}
        import triton
        from triton.testing import do_bench

        self.data["triton"] = triton.__version__
        self.do_bench = do_bench

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=1, default=str))

    def error(self, where: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"  ERROR {where}: {msg}", flush=True)
        self.data["errors"].append({"where": where, "error": msg,
                                    "trace": traceback.format_exc()[-2000:]})

    # ------------------------------------------------------------ correctness
    def check(self, fn, shape, kind: str, seed: int = 1234):
        q, k, v = self.inp.make_inputs(shape, seed, kind, device="cuda")
        out = fn(q, k, v, causal=shape.causal, sm_scale=shape.sm_scale)
        ref = self.ref.reference(q, k, v, causal=shape.causal, sm_scale=shape.scale)
        lowp = self.ref.torch_lowp(q, k, v, causal=shape.causal, sm_scale=shape.scale)
        return self.corr.compare(out, ref, lowp, shape.dtype)

    def correctness(self, seed_name: str, mod) -> bool:
        target = self.tg.get_target("mha" if seed_name == "mha.py" else "gqa")
        all_ok = True
        for base in target.validation_shapes("cuda"):
            for dtype in ("bfloat16", "float16"):
                shape = replace(base, dtype=dtype)
                worst, ok, err = None, True, ""
                for kind in self.args.kinds:
                    try:
                        st = self.check(mod.attention, shape, kind)
                    except Exception as exc:  # noqa: BLE001 - report and go on
                        self.error(f"{seed_name} {shape.name} {kind}", exc)
                        ok, err = False, type(exc).__name__
                        continue
                    ok = ok and st.ok
                    if worst is None or st.ratio > worst.ratio:
                        worst = st
                all_ok = all_ok and ok
                rec = {"seed": seed_name, "shape": shape.name, "ok": ok, "error": err,
                       "max_err": worst.max_err if worst else None,
                       "torch_err": worst.torch_err if worst else None,
                       "ratio": worst.ratio if worst else None}
                self.data["correctness"].append(rec)
                print(f"  {'PASS' if ok else 'FAIL'}  {seed_name:13s} {shape.name:58s} "
                      f"max_err {bu.fmt(rec['max_err'], '.2e')} torch {bu.fmt(rec['torch_err'], '.2e')}"
                      f" ratio {bu.fmt(rec['ratio'], '.2f')} {err}", flush=True)
        self.save()
        return all_ok

    # ------------------------------------------------------------ timing
    def bench(self, fn, shape) -> float:
        q, k, v = self.inp.make_inputs(shape, 7, "gaussian", device="cuda")
        out = fn(q, k, v, causal=shape.causal)
        if not bool(self.torch.isfinite(out).all()):
            raise FloatingPointError("non-finite output on the timed shape")
        del out
        return float(self.do_bench(lambda: fn(q, k, v, causal=shape.causal),
                                   return_mode="median"))

    def baselines(self, shapes) -> None:
        names = ["cudnn", "flash"] + ([] if self.args.no_flex else ["flex"])
        for name in names:
            try:
                fn = self.bl.get_baseline(name)
            except Exception as exc:  # noqa: BLE001
                self.error(f"baseline {name}", exc)
                continue
            for shape in shapes:
                rec = self.data["baselines"].setdefault(shape.name, {})
                if name in rec:
                    continue
                try:
                    rec[name] = self.bench(fn, shape)
                except Exception as exc:  # noqa: BLE001 - a backend may refuse a shape
                    rec[name] = None
                    self.error(f"baseline {name} {shape.name}", exc)
                print(f"  {bu.PEER_NAMES[name]:13s} {shape.name:50s} "
                      f"{bu.fmt(bu.tflops(shape.flops(), rec[name]))} TFLOP/s", flush=True)
                self.save()

    def tune(self, seed_name: str, mod, suite) -> dict:
        default = dict(mod.CONFIG)
        best_config = dict(default)
        results = self.data["configs"].setdefault(seed_name, {})
        for cls in CLASSES:
            shapes = [s for s in suite if shape_class(s) == cls]
            if not shapes:
                continue
            probe = self.tg.Shape(B=2, Hq=8, Hkv=2, S=1000, D=64 if cls.startswith("D64") else 128,
                                  causal=cls.endswith("_C"), dtype="bfloat16")
            per_cls = results.setdefault(cls, {})
            for variant in VARIANTS[cls][: self.args.max_configs]:
                label = variant[0]
                mod.CONFIG.clear()
                mod.CONFIG.update(apply_variant(default, cls, variant))
                rec = per_cls.setdefault(label, {"config": dict(mod.CONFIG), "ms": {}})
                try:
                    st = self.check(mod.attention, probe, "large_rows")
                    rec["check"] = st.ok
                    if not st.ok:
                        print(f"  {seed_name} {cls} [{label}] FAILS the check: {st.message}",
                              flush=True)
                        continue
                except Exception as exc:  # noqa: BLE001 - a config that does not compile
                    rec["check"] = False
                    self.error(f"{seed_name} {cls} [{label}] check", exc)
                    continue
                for shape in shapes:
                    try:
                        rec["ms"][shape.name] = self.bench(mod.attention, shape)
                    except Exception as exc:  # noqa: BLE001
                        rec["ms"][shape.name] = None
                        self.error(f"{seed_name} {cls} [{label}] {shape.name}", exc)
                    print(f"  {seed_name:7s} {cls:8s} [{label:18s}] {shape.name:50s} "
                          f"{bu.fmt(bu.tflops(shape.flops(), rec['ms'][shape.name]))} TFLOP/s",
                          flush=True)
                self.save()
            best = self.pick(per_cls, shapes)
            if best is not None:
                best_config.update({k: v for k, v in per_cls[best]["config"].items()
                                    if k.endswith("_" + cls)})
                self.data["best"].setdefault(seed_name, {})[cls] = best
        mod.CONFIG.clear()
        mod.CONFIG.update(default)
        self.data["suggested_config"][seed_name] = best_config
        self.save()
        return best_config

    def pick(self, per_cls: dict, shapes) -> str | None:
        """The config with the best geomean speed-up over cuDNN on the class's shapes."""
        scores = {}
        for label, rec in per_cls.items():
            ms = [rec["ms"].get(s.name) for s in shapes]
            if not rec.get("check") or any(m is None for m in ms):
                continue
            ratios = [(self.data["baselines"].get(s.name, {}).get("cudnn") or m) / m
                      for s, m in zip(shapes, ms)]
            scores[label] = geomean(ratios)
        for label, score in sorted(scores.items(), key=lambda kv: -kv[1]):
            print(f"    {label:20s} geomean x cuDNN {score:.3f}", flush=True)
        return max(scores, key=scores.get) if scores else None


def report(sweep: Sweep, seed_name: str, suite) -> None:
    data = sweep.data
    best = data["best"].get(seed_name, {})
    rows, ratios, ahead = [], [], True
    for shape in suite:
        cls = shape_class(shape)
        label = best.get(cls)
        ms = data["configs"][seed_name].get(cls, {}).get(label, {}).get("ms", {}).get(shape.name) \
            if label else None
        base = data["baselines"].get(shape.name, {})
        t = bu.tflops(shape.flops(), ms)
        peers = {n: bu.tflops(shape.flops(), base.get(n)) for n in ("cudnn", "flash", "flex")}
        ratio = (t / peers["cudnn"]) if t and peers["cudnn"] else None
        ratios.append(ratio)
        beats = all(t and (p is None or t > p) for n, p in peers.items() if n != "cudnn")
        ahead = ahead and bool(beats)
        rows.append([shape.name, label or "-", bu.fmt(t), bu.fmt(peers["cudnn"]),
                     bu.fmt(peers["flash"]), bu.fmt(peers["flex"]), bu.fmt(ratio, ".3f"),
                     "yes" if beats else "NO"])
    print(f"\n== {seed_name}: best config per class (TFLOP/s, do_bench median, {data['gpu']})")
    print(bu.table(["shape", "config", seed_name, "cuDNN", "flash", "flex", "x cuDNN",
                    "> flash & flex"], rows))
    gm = geomean(ratios)
    print(f"geomean vs cuDNN: {bu.fmt(gm, '.3f')}   ahead of flash and flex on every shape: "
          f"{'yes' if ahead else 'NO'}")
    print(f"suggested CONFIG for seeds/{seed_name}:\n{json.dumps(data['suggested_config'][seed_name], indent=4)}")
    data.setdefault("summary", {})[seed_name] = {"geomean_vs_cudnn": gm, "ahead_of_peers": ahead}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="JSON output path")
    ap.add_argument("--seeds", default="gqa_naive.py,gqa.py,mha.py")
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention (slow compiles)")
    ap.add_argument("--no-check", action="store_true", help="skip part (a), correctness")
    ap.add_argument("--no-tune", action="store_true", help="skip part (b), configs + timing")
    ap.add_argument("--max-configs", type=int, default=8)
    ap.add_argument("--kinds", default="gaussian,large_rows,needle")
    args = ap.parse_args(argv)
    args.kinds = args.kinds.split(",")
    import torch

    if not torch.cuda.is_available():
        print("seed_sweep.py needs a CUDA GPU", file=sys.stderr)
        return 2
    import torch._dynamo

    for knob in ("cache_size_limit", "recompile_limit"):  # one flex compile per suite shape
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 256)
    t0 = time.time()
    sweep = Sweep(args.out, args)
    seeds = [s for s in args.seeds.split(",") if s]
    mods = {}
    for name in seeds:
        try:
            mods[name] = bu.load_kernel(SEEDS_DIR / name, name)
        except Exception as exc:  # noqa: BLE001
            sweep.error(f"import {name}", exc)
    if not args.no_check:
        print("== (a) correctness: validation shapes x {bf16, fp16} x input kinds", flush=True)
        for name, mod in mods.items():
            ok = sweep.correctness(name, mod)
            print(f"-- {name}: {'ALL PASS' if ok else 'FAILURES'} ({time.time() - t0:.0f}s)",
                  flush=True)
    if not args.no_tune:
        print("\n== (b) configs on the default suites", flush=True)
    for name in (s for s in seeds if s in TUNED and s in mods and not args.no_tune):
        target = sweep.tg.get_target("mha" if name == "mha.py" else "gqa")
        suite = target.suite("default")
        sweep.baselines(suite)
        sweep.tune(name, mods[name], suite)
        report(sweep, name, suite)
        sweep.save()
        print(f"({time.time() - t0:.0f}s)", flush=True)
    print(f"\nwrote {args.out}; {len(sweep.data['errors'])} errors; {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
