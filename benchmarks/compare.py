"""Time kernels beside every available peer on a target's suite, in ONE process on this GPU.

    python benchmarks/compare.py KERNEL.py [KERNEL.py ...] --target gqa [--suite default]
                                 [--out benchmarks/results] [--peers cudnn,flash,flex]
                                 [--rounds 3] [--blocked]

(also ``evolve bench FILE... --target T``). Uses the evaluator's timing protocol
(evaluator/timing.py: fresh seeded inputs per call, L2 flush, warm-up, median of CUDA
events) and the target's inputs, reference and baselines (any target: a built-in name or
a target file; ``--peers`` defaults to the target's GPU baselines, ratios are to the first).
Timing order is interleaved by default: for each shape every contestant (peers, then
kernels) is timed back to back for ``--rounds`` rounds, round r starting at contestant
r mod n, and a contestant's time on the shape is the median of its rounds (each round is
one evaluator-protocol call). Why: on an H100 (2026-11-26) the same code timed second in
one process, contestant by contestant, scored 1.5% lower against cuDNN (geomean over the
24 gqa shapes 0.867 vs 0.880; the two files differed on 2 of them), presumably clock or
thermal drift between the blocks, which biased the ratio against whatever came later. ``--blocked`` restores the old order
(all shapes of the peers, then of each kernel in turn; one call per shape).
Each kernel's first output on a shape is checked on sampled rows against the
evaluator's reference with the evaluator's error rule, before any timing of the shape.
Prints TFLOP/s per shape, the ratio to cuDNN and geometric means; writes JSON (with
"order" and "rounds") and a standalone SVG bar chart to the output folder. Kernel
files are trusted user files (imported here, not sandboxed).
Exit codes: 0 done, 1 a kernel failed a check, 2 usage error / no GPU.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import bench_util as bu  # noqa: E402  (puts the repo root on sys.path)
from evaluator import geomean  # noqa: E402

DEFAULT_OUT = bu.REPO / "benchmarks" / "results"
SAMPLE_ROWS = 32
DEFAULT_ROUNDS = 3


def schedule(contestants: list, n_shapes: int, rounds: int) -> list[tuple[int, object]]:
    """The interleaved timing order: (shape index, contestant) pairs, shape by shape.

    Every contestant is timed ``rounds`` times per shape; round r runs the contestants in
    rotated order starting at contestant r mod n, so over n rounds each one takes each
    position once (and no contestant is always first or last)."""
    n = len(contestants)
    return [(i, contestants[(r + j) % n])
            for i in range(n_shapes) for r in range(rounds) for j in range(n)]


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


class _Peers:
    """The target's GPU baselines by name (``get_baseline``, as the tests fake it)."""

    def __init__(self, target):
        self.target = target

    def get_baseline(self, name: str):
        return self.target.baseline(name, "cuda")


def peer_name(name: str) -> str:
    return bu.PEER_NAMES.get(name, name)


class Comparison:
    def __init__(self, target: str, suite: str, peers: list[str] | None):
        import torch

        from evaluator import correctness, inputs, targets, timed_inputs, timing

        self.torch, self.corr, self.inp, self.timing = torch, correctness, inputs, timing
        self.timed_inputs = timed_inputs
        self.target = targets.get_target(target)
        self.bl = _Peers(self.target)
        self.shapes = self.target.suite(suite)
        self.suite = suite
        self.peers = list(peers) if peers else list(self.target.baselines)
        bad = [p for p in self.peers if p not in self.target.baselines]
        if bad:
            raise ValueError(f"unknown peer(s) {', '.join(bad)} for target {self.target.name} "
                             f"(known: {', '.join(self.target.baselines)})")
        self.ref_peer = peer_name(self.peers[0]) if self.peers else None
        self.master = secrets.randbits(62)
        self.device = "cuda"  # the CPU tests run check() in the interpreter with "cpu"
        self.params = timing.TimingParams.for_device("cuda")
        self.ms: dict[str, dict[str, float | None]] = {}    # provider -> shape -> ms
        self.checks: dict[str, dict[str, dict]] = {}        # kernel -> shape -> stats
        self.errors: list[dict] = []

    def flops(self, shape) -> float | None:
        return self.target.flops(shape)

    def _time(self, fn, shape) -> float:
        """One timing of `fn` on `shape`, its inputs built as the evaluator builds them (a
        target's shared inputs, e.g. decode's KV cache, once per timing and freed after)."""
        idx = [s.name for s in self.shapes].index(shape.name)
        with self.timed_inputs.TimedInputs(self.target, shape, self.master,
                                           self.target.kinds[:1], idx, 0, "cuda") as make:
            rec = self.timing.time_call(fn, make, params=self.params, device="cuda",
                                        expect=tuple(shape.out_shape), settle=make.settle)
        return rec.ms

    def _error(self, who: str, shape, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        print(f"  ERROR {who} {shape.name}: {msg}", flush=True)
        self.errors.append({"provider": who, "shape": shape.name, "error": msg,
                            "trace": traceback.format_exc()[-2000:]})

    def _load_peers(self) -> list[tuple[str, str, object]]:
        """(display name, peer key, fn) of every peer available here."""
        out = []
        for name in self.peers:
            try:
                out.append((peer_name(name), name, self.bl.get_baseline(name)))
            except Exception as exc:  # noqa: BLE001 - a peer that is not available here
                print(f"  {name}: unavailable ({type(exc).__name__}: {exc})", flush=True)
        return out

    def _load_kernel(self, label: str, path: Path):
        """The kernel's attention(), or None (all shapes marked failed) if it cannot import."""
        times = self.ms.setdefault(label, {})
        checks = self.checks.setdefault(label, {})
        try:
            return getattr(bu.load_kernel(path, label), self.target.entry)
        except Exception as exc:  # noqa: BLE001
            for shape in self.shapes:
                times[shape.name] = None
                checks[shape.name] = {"ok": False, "message": f"import failed: {exc}"}
            self._error(label, self.shapes[0], exc)
            return None

    def run_peers(self) -> None:
        """Blocked order: every shape of each peer in turn (used by --blocked, seed_tune.py)."""
        for disp, name, fn in self._load_peers():
            times = self.ms.setdefault(disp, {})
            for shape in self.shapes:
                try:
                    times[shape.name] = self._time(fn, shape)
                except Exception as exc:  # noqa: BLE001 - a backend may refuse a shape
                    times[shape.name] = None
                    self._error(name, shape, exc)
                self._progress(disp, shape, times[shape.name])

    def check(self, fn, shape) -> dict:
        """The kernel's output on sampled rows against the target's reference, on inputs
        built as the evaluator builds timed ones (a call index timing never uses)."""
        idx = [s.name for s in self.shapes].index(shape.name)
        with self.timed_inputs.TimedInputs(self.target, shape, self.master,
                                           self.target.kinds[:1], idx, 0, self.device) as make:
            call = make(-100)
            out = fn(*call.args, **call.kwargs)
            S = shape.rows
            gen = self.torch.Generator().manual_seed(self.inp.derive_seed(self.master, "rows"))
            rows = sorted(set(self.torch.randperm(S, generator=gen)[: SAMPLE_ROWS - 1].tolist())
                          | {S - 1})
            sel = self.torch.tensor(rows, device=out.device)
            ref = self.target.reference(call, shape, rows)
            lowp = self.target.lowp(call, shape, rows)
            st = self.corr.compare(out.index_select(2, sel), ref, lowp, shape.dtype,
                                   **self.target.tolerance)
        return {"ok": st.ok, "message": st.message, "max_err": st.max_err, "ratio": st.ratio}

    def run_kernel(self, label: str, path: Path) -> None:
        """Blocked order: check and time one kernel on every shape (used by --blocked)."""
        fn = self._load_kernel(label, path)
        if fn is None:
            return
        times, checks = self.ms[label], self.checks[label]
        for shape in self.shapes:
            try:
                checks[shape.name] = self.check(fn, shape)
                times[shape.name] = self._time(fn, shape)
            except Exception as exc:  # noqa: BLE001 - report, go on with the next shape
                times[shape.name] = None
                checks.setdefault(shape.name, {"ok": False, "message": type(exc).__name__})
                self._error(label, shape, exc)
            self._progress(label, shape, times[shape.name], checks.get(shape.name))

    def run_interleaved(self, kernels: list[tuple[str, Path]], rounds: int = DEFAULT_ROUNDS) -> None:
        """Interleaved order (default): per shape, check the kernels, then time all
        contestants back to back for ``rounds`` rotated rounds (see schedule()); a
        contestant's time is the median of its rounds, None once any of its calls raised."""
        # contestant: (display name, name for errors, fn, is_kernel)
        cont = [(disp, name, fn, False) for disp, name, fn in self._load_peers()]
        for disp, *_ in cont:  # peers first in ms (table, JSON, SVG), as in blocked order
            self.ms.setdefault(disp, {})
        for label, path in kernels:
            fn = self._load_kernel(label, path)
            if fn is not None:
                cont.append((label, label, fn, True))
        if not cont:
            return
        order = [c for _, c in schedule(list(range(len(cont))), 1, rounds)]  # same per shape
        for shape in self.shapes:
            live = set(range(len(cont)))
            for c, (disp, name, fn, is_kernel) in enumerate(cont):
                if is_kernel:
                    try:
                        self.checks[disp][shape.name] = self.check(fn, shape)
                    except Exception as exc:  # noqa: BLE001 - report, skip its timing here
                        self.checks[disp][shape.name] = {"ok": False, "message": type(exc).__name__}
                        self._error(name, shape, exc)
                        live.discard(c)
            runs: dict[int, list[float]] = {c: [] for c in live}
            for c in order:
                if c not in live:
                    continue
                try:
                    runs[c].append(self._time(cont[c][2], shape))
                except Exception as exc:  # noqa: BLE001 - a backend may refuse a shape
                    live.discard(c)
                    self._error(cont[c][1], shape, exc)
            for c, (disp, _, _, is_kernel) in enumerate(cont):
                ms = statistics.median(runs[c]) if c in live and runs[c] else None
                self.ms[disp][shape.name] = ms
                self._progress(disp, shape, ms, self.checks[disp].get(shape.name) if is_kernel else None)

    def _progress(self, who: str, shape, ms, check=None) -> None:
        flag = "" if check is None else ("  ok" if check.get("ok") else "  CHECK FAILED")
        print(f"  {who:16s} {shape.name:55s} {bu.fmt(ms, '.4f')} ms  "
              f"{bu.fmt(bu.tflops(self.flops(shape), ms))} TFLOP/s{flag}", flush=True)

    # ------------------------------------------------------------ output
    def tflops_table(self) -> dict[str, list[float | None]]:
        return {who: [bu.tflops(self.flops(s), t.get(s.name)) for s in self.shapes]
                for who, t in self.ms.items()}

    def summary(self) -> dict[str, dict]:
        tf = self.tflops_table()
        ref = tf.get(self.ref_peer)
        out = {}
        for who, vals in tf.items():
            ratios = [v / c if v and c else None for v, c in zip(vals, ref or [None] * len(vals))]
            out[who] = {"geomean_tflops": geomean(vals), "ref": self.ref_peer,
                        "geomean_vs_ref": geomean(ratios) if ref else None,
                        "shapes_timed": sum(v is not None for v in vals)}
            if self.ref_peer == bu.PEER_NAMES["cudnn"]:
                out[who]["geomean_vs_cudnn"] = out[who]["geomean_vs_ref"]
        return out

    def render(self, kernels: list[str]) -> str:
        tf = self.tflops_table()
        cudnn = tf.get(self.ref_peer)
        ref_label = "x cuDNN" if self.ref_peer == bu.PEER_NAMES["cudnn"] else f"x {self.ref_peer}"
        peers = [p for p in tf if p not in kernels]
        headers = ["shape"]
        for k in kernels:
            headers += [k, ref_label]
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
            foot += [bu.fmt(summ[k]["geomean_tflops"]), bu.fmt(summ[k]["geomean_vs_ref"], ".3f")]
        foot += [bu.fmt(summ[p]["geomean_tflops"]) for p in peers]
        rows.append(foot)
        return bu.table(headers, rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time kernels beside SDPA-cuDNN/flash and FlexAttention.")
    ap.add_argument("kernels", nargs="+", type=Path)
    ap.add_argument("--target", default="gqa")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--peers", default=None, help="comma list (default: the target's baselines)")
    ap.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                    help="interleaved rounds per shape; each contestant's time is the median "
                         f"of its rounds (default {DEFAULT_ROUNDS})")
    ap.add_argument("--blocked", action="store_true",
                    help="old order: all shapes of the peers, then of each kernel in turn "
                         "(one call per shape; biased by clock drift, see the docstring)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        print("error: --rounds must be >= 1", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.kernels if not p.is_file()]
    if missing:
        print(f"error: kernel file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print("error: benchmarks/compare.py needs a CUDA GPU (none is visible)", file=sys.stderr)
        return 2
    peers = [p for p in args.peers.split(",") if p] if args.peers else None
    import torch._dynamo

    for knob in ("cache_size_limit", "recompile_limit"):  # flex compiles once per shape
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 256)
    try:
        cmp = Comparison(args.target, args.suite, peers)
    except Exception as exc:  # noqa: BLE001 - unknown target, suite or peer name
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    gpu = torch.cuda.get_device_name()
    order, rounds = ("blocked", 1) if args.blocked else ("interleaved", args.rounds)
    print(f"== {args.target}/{args.suite} on {gpu}: {len(cmp.shapes)} shapes, "
          f"{order} order, {rounds} round(s)", flush=True)
    labels = _labels(args.kernels)
    if args.blocked:
        cmp.run_peers()
        for label, path in zip(labels, args.kernels):
            cmp.run_kernel(label, path)
    else:
        cmp.run_interleaved(list(zip(labels, args.kernels)), rounds)
    print(f"\n{args.target}/{args.suite} on {gpu} - TFLOP/s (median of CUDA events, "
          f"evaluator protocol; {order} order, median of {rounds} round(s)); "
          "'!' = failed the correctness check")
    print(cmp.render(labels))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"compare-{args.target}-{args.suite}-{stamp}"
    import triton

    data = {"target": args.target, "suite": args.suite, "gpu": gpu, "torch": torch.__version__,
            "triton": triton.__version__, "created_at": stamp,
            "timing": "evaluator protocol: fresh inputs, L2 flush, median of CUDA events",
            "order": order, "rounds": rounds,
            "kernels": {lab: str(p) for lab, p in zip(labels, args.kernels)},
            "shapes": [s.to_dict() | {"name": s.name, "flops": cmp.flops(s)} for s in cmp.shapes],
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
