"""Time kernels beside every available peer on a target's suite, in ONE process on this GPU.

    python benchmarks/compare.py KERNEL.py [KERNEL.py ...] --target gqa [--suite default]
                                 [--out benchmarks/results] [--peers cudnn,flash,flex]

(also ``evolve bench FILE... --target T``). Uses the evaluator's timing protocol
(evaluator/timing.py: fresh seeded inputs per call, L2 flush, warm-up, median of CUDA
events) and its baseline providers (evaluator/baselines.py); peers are timed first.
Each kernel's first output on a shape is checked on sampled rows against the
evaluator's reference with the evaluator's error rule. Prints TFLOP/s per shape, the
ratio to cuDNN and geometric means; writes JSON and a standalone SVG bar chart to the
output folder. Kernel files are trusted user files (imported here, not sandboxed).
Exit codes: 0 done, 1 a kernel failed a check, 2 usage error / no GPU.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import bench_util as bu  # noqa: E402  (puts the repo root on sys.path)

DEFAULT_OUT = bu.REPO / "benchmarks" / "results"
SAMPLE_ROWS = 32


def _labels(paths: list[Path]) -> list[str]:
    """Short unique labels: the file stem, prefixed by its folder when stems collide."""
    stems = [p.stem for p in paths]
    out = []
    for p, stem in zip(paths, stems):
        label = stem if stems.count(stem) == 1 else f"{p.parent.name}/{stem}"
        while label in out:
            label += "'"
        out.append(label)
    return out


class Comparison:
    def __init__(self, target: str, suite: str, peers: list[str]):
        import torch

        from evaluator import baselines, correctness, inputs, reference, targets, timing

        self.torch, self.bl, self.corr, self.inp, self.ref, self.timing = (
            torch, baselines, correctness, inputs, reference, timing)
        self.target = targets.get_target(target)
        self.shapes = self.target.suite(suite)
        self.suite = suite
        self.peers = peers
        self.master = secrets.randbits(62)
        self.params = timing.TimingParams.for_device("cuda")
        self.ms: dict[str, dict[str, float | None]] = {}    # provider -> shape -> ms
        self.checks: dict[str, dict[str, dict]] = {}        # kernel -> shape -> stats
        self.errors: list[dict] = []

    def _make(self, shape):
        def make(n: int):
            seed = self.inp.derive_seed(self.master, shape.name, n)
            return self.inp.make_inputs(shape, seed, "gaussian", device="cuda")
        return make

    def _time(self, fn, shape) -> float:
        rec = self.timing.time_call(fn, self._make(shape), causal=shape.causal, kwargs={},
                                    params=self.params, device="cuda")
        return rec.ms

    def _error(self, who: str, shape, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        print(f"  ERROR {who} {shape.name}: {msg}", flush=True)
        self.errors.append({"provider": who, "shape": shape.name, "error": msg,
                            "trace": traceback.format_exc()[-2000:]})

    def run_peers(self) -> None:
        for name in self.peers:
            try:
                fn = self.bl.get_baseline(name)
            except Exception as exc:  # noqa: BLE001 - a peer that is not available here
                print(f"  {name}: unavailable ({type(exc).__name__}: {exc})", flush=True)
                continue
            times = self.ms.setdefault(bu.PEER_NAMES[name], {})
            for shape in self.shapes:
                try:
                    times[shape.name] = self._time(fn, shape)
                except Exception as exc:  # noqa: BLE001 - a backend may refuse a shape
                    times[shape.name] = None
                    self._error(name, shape, exc)
                self._progress(bu.PEER_NAMES[name], shape, times[shape.name])

    def check(self, fn, shape) -> dict:
        q, k, v = self._make(shape)(-100)
        out = fn(q, k, v, causal=shape.causal)
        S = shape.S
        gen = self.torch.Generator().manual_seed(self.inp.derive_seed(self.master, "rows"))
        rows = sorted(set(self.torch.randperm(S, generator=gen)[: SAMPLE_ROWS - 1].tolist()) | {S - 1})
        idx = self.torch.tensor(rows, device=q.device)
        ref = self.ref.reference(q, k, v, causal=shape.causal, sm_scale=shape.scale, rows=rows)
        lowp = self.ref.torch_lowp(q, k, v, causal=shape.causal, sm_scale=shape.scale, rows=rows)
        st = self.corr.compare(out.index_select(2, idx), ref, lowp, shape.dtype)
        return {"ok": st.ok, "message": st.message, "max_err": st.max_err, "ratio": st.ratio}

    def run_kernel(self, label: str, path: Path) -> None:
        times = self.ms.setdefault(label, {})
        checks = self.checks.setdefault(label, {})
        try:
            mod = bu.load_kernel(path, label)
        except Exception as exc:  # noqa: BLE001
            for shape in self.shapes:
                times[shape.name] = None
                checks[shape.name] = {"ok": False, "message": f"import failed: {exc}"}
            self._error(label, self.shapes[0], exc)
            return
        for shape in self.shapes:
            try:
                checks[shape.name] = self.check(mod.attention, shape)
                times[shape.name] = self._time(mod.attention, shape)
            except Exception as exc:  # noqa: BLE001 - report, go on with the next shape
                times[shape.name] = None
                checks.setdefault(shape.name, {"ok": False, "message": type(exc).__name__})
                self._error(label, shape, exc)
            self._progress(label, shape, times[shape.name], checks.get(shape.name))

    def _progress(self, who: str, shape, ms, check=None) -> None:
        flag = "" if check is None else ("  ok" if check.get("ok") else "  CHECK FAILED")
        print(f"  {who:16s} {shape.name:55s} {bu.fmt(ms, '.4f')} ms  "
              f"{bu.fmt(bu.tflops(shape.flops(), ms))} TFLOP/s{flag}", flush=True)

    # ------------------------------------------------------------ output
    def tflops_table(self) -> dict[str, list[float | None]]:
        return {who: [bu.tflops(s.flops(), t.get(s.name)) for s in self.shapes]
                for who, t in self.ms.items()}

    def summary(self) -> dict[str, dict]:
        tf = self.tflops_table()
        cudnn = tf.get(bu.PEER_NAMES["cudnn"])
        out = {}
        for who, vals in tf.items():
            ratios = [v / c if v and c else None for v, c in zip(vals, cudnn or [None] * len(vals))]
            out[who] = {"geomean_tflops": bu.geomean(vals),
                        "geomean_vs_cudnn": bu.geomean(ratios) if cudnn else None,
                        "shapes_timed": sum(v is not None for v in vals)}
        return out

    def render(self, kernels: list[str]) -> str:
        tf = self.tflops_table()
        cudnn = tf.get(bu.PEER_NAMES["cudnn"])
        peers = [p for p in tf if p not in kernels]
        headers = ["shape"]
        for k in kernels:
            headers += [k, "x cuDNN"]
        headers += peers
        rows = []
        for i, shape in enumerate(self.shapes):
            row = [shape.name]
            for k in kernels:
                v = tf[k][i]
                ok = self.checks.get(k, {}).get(shape.name, {}).get("ok", True)
                row += [bu.fmt(v) + ("" if ok else "!"),
                        bu.fmt(v / cudnn[i] if v and cudnn and cudnn[i] else None, ".3f")]
            row += [bu.fmt(tf[p][i]) for p in peers]
            rows.append(row)
        summ = self.summary()
        foot = ["geomean"]
        for k in kernels:
            foot += [bu.fmt(summ[k]["geomean_tflops"]), bu.fmt(summ[k]["geomean_vs_cudnn"], ".3f")]
        foot += [bu.fmt(summ[p]["geomean_tflops"]) for p in peers]
        rows.append(foot)
        return bu.table(headers, rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time kernels beside SDPA-cuDNN/flash and FlexAttention.")
    ap.add_argument("kernels", nargs="+", type=Path)
    ap.add_argument("--target", default="gqa")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--peers", default="cudnn,flash,flex")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.kernels if not p.is_file()]
    if missing:
        print(f"error: kernel file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print("error: benchmarks/compare.py needs a CUDA GPU (none is visible)", file=sys.stderr)
        return 2
    peers = [p for p in args.peers.split(",") if p]
    bad = [p for p in peers if p not in bu.PEER_NAMES]
    if bad:
        print(f"error: unknown peer(s) {', '.join(bad)} (known: cudnn, flash, flex)", file=sys.stderr)
        return 2
    import torch._dynamo

    for knob in ("cache_size_limit", "recompile_limit"):  # flex compiles once per shape
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 256)
    try:
        cmp = Comparison(args.target, args.suite, peers)
    except Exception as exc:  # noqa: BLE001 - unknown target or suite name
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    gpu = torch.cuda.get_device_name()
    print(f"== {args.target}/{args.suite} on {gpu}: {len(cmp.shapes)} shapes", flush=True)
    cmp.run_peers()
    labels = _labels(args.kernels)
    for label, path in zip(labels, args.kernels):
        cmp.run_kernel(label, path)
    print(f"\n{args.target}/{args.suite} on {gpu} - TFLOP/s (median of CUDA events, "
          "evaluator protocol); '!' = failed the correctness check")
    print(cmp.render(labels))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"compare-{args.target}-{args.suite}-{stamp}"
    import triton

    data = {"target": args.target, "suite": args.suite, "gpu": gpu, "torch": torch.__version__,
            "triton": triton.__version__, "created_at": stamp,
            "timing": "evaluator protocol: fresh inputs, L2 flush, median of CUDA events",
            "kernels": {lab: str(p) for lab, p in zip(labels, args.kernels)},
            "shapes": [s.to_dict() | {"name": s.name, "flops": s.flops()} for s in cmp.shapes],
            "ms": cmp.ms, "tflops": cmp.tflops_table(), "checks": cmp.checks,
            "summary": cmp.summary(), "errors": cmp.errors, "wall_s": time.time() - t0}
    base.with_suffix(".json").write_text(json.dumps(data, indent=1))
    svg = bu.svg_bar_chart(f"{args.target}/{args.suite} on {gpu} (TFLOP/s)",
                           [s.name.replace(" bfloat16", "") for s in cmp.shapes],
                           cmp.tflops_table())
    base.with_suffix(".svg").write_text(svg)
    print(f"wrote {base}.json and {base}.svg ({time.time() - t0:.0f}s)")
    failed = any(not c.get("ok", False) for lab in labels for c in cmp.checks.get(lab, {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
