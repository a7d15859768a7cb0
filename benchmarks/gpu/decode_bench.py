"""Decode seeds on a GPU: correctness on every validation shape, time against the
baselines on the default suite, bandwidth on the S_max = 128k shapes.

    python benchmarks/gpu/decode_bench.py [KERNEL.py ...] --json OUT.json [--suite default]

(``bash benchmarks/gpu/run.sh decode``; default kernels seeds/decode_naive.py and
seeds/decode.py). Three steps, in one process on one GPU:

1. **check**: every kernel on every GPU validation shape of the ``decode`` target x every
   input kind, against the target's reference with the evaluator's error rule.
2. **time**: every suite shape with the evaluator's timing protocol (evaluator/timing.py
   and timed_inputs.py: the KV cache built once per shape and contestant, a fresh seeded
   query and lengths per call, L2 flush, median of CUDA events): the target's baselines
   (SDPA on its fastest backend, compiled FlexAttention), FlashInfer's batch decode when
   ``flashinfer`` imports (Sq = 1 only; its plan step is inside the timed call), and the
   kernels; speedup = fastest baseline / kernel, geometric mean over the suite.
3. **bandwidth**: device-to-device copy bandwidth measured here (``dst.copy_(src)`` of
   1 GiB, read + write bytes / time, median of 20), and each kernel's and baseline's
   bytes / time on the S_max = 128k shapes as a fraction of it. Bytes are the target's
   ``bytes_moved`` (exact for uniform lengths; for ragged lengths the expected value of
   the length draw, flagged ``expected``).

Kernel files are trusted user files (imported here, not sandboxed). Writes the JSON as it
goes. Exit 0 done, 1 a kernel failed a check. ``--device cpu`` (with TRITON_INTERPRET=1
and ``--suite smoke``) is a dry run of the script itself: CPU validation shapes, the CPU
baseline, no bandwidth step; its times are not GPU performance.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from evaluator import geomean, get_target  # noqa: E402
from evaluator.correctness import compare  # noqa: E402
from evaluator.inputs import derive_seed  # noqa: E402
from evaluator.timed_inputs import TimedInputs  # noqa: E402
from evaluator.timing import TimingParams, time_call  # noqa: E402

DEFAULT_KERNELS = ("seeds/decode_naive.py", "seeds/decode.py")
K128 = 131072


def load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.attention


def flashinfer_baseline():
    """FlashInfer's batch decode over the cache viewed as one page per sequence (HND)."""
    import flashinfer
    import torch

    ws = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device="cuda")
    wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, kv_layout="HND")

    def run(q, k_cache, v_cache, *, cache_seqlens, sm_scale=None):
        B, Hq, Sq, D = q.shape
        if Sq != 1:
            raise ValueError("flashinfer batch decode takes one query token")
        Hkv, S = k_cache.shape[1], k_cache.shape[2]
        dev = q.device
        wrapper.plan(torch.arange(B + 1, dtype=torch.int32, device=dev),
                     torch.arange(B, dtype=torch.int32, device=dev), cache_seqlens.to(torch.int32),
                     Hq, Hkv, D, S, q_data_type=q.dtype, kv_data_type=k_cache.dtype,
                     sm_scale=sm_scale)
        return wrapper.run(q[:, :, 0], (k_cache, v_cache)).unsqueeze(2)

    return run


def free_device_memory(device: str) -> None:
    """Drop what a contestant left behind (cycles, cached blocks) before the next one."""
    gc.collect()
    if device == "cuda":
        import torch
        torch.cuda.empty_cache()


def copy_bandwidth_gbs() -> float:
    import torch

    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").fill_(1)
    dst = torch.empty_like(src)
    times = []
    for i in range(25):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        dst.copy_(src)
        e1.record()
        torch.cuda.synchronize()
        if i >= 5:
            times.append(e0.elapsed_time(e1))
    return 2 * n / (statistics.median(times) * 1e-3) / 1e9


class Bench:
    def __init__(self, kernels: list[str], suite: str, out: Path, device: str = "cuda"):
        self.t = get_target("decode")
        self.device = device
        self.kernels = {Path(k).stem: load(k) for k in kernels}
        self.shapes = self.t.suite(suite)
        self.out = out
        self.data: dict = {"suite": suite, "kernels": kernels, "checks": [], "ms": {}, "errors": [],
                           "baselines_ran": [], "bandwidth": {}}
        self.params = TimingParams.for_device(device)
        self.failed = False

    def save(self) -> None:
        self.out.write_text(json.dumps(self.data, indent=1, default=str))

    def check(self) -> None:
        for name, fn in self.kernels.items():
            for i, shape in enumerate(self.t.validation_shapes(self.device)):
                for kind in self.t.kinds:
                    call = self.t.make_inputs(shape, derive_seed(1, i, kind), kind, self.device)
                    try:
                        st = compare(fn(*call.args, **call.kwargs), self.t.reference(call, shape),
                                     self.t.lowp(call, shape), shape.dtype)
                        ok, msg, ratio = st.ok, st.message, st.ratio
                    except Exception as exc:  # noqa: BLE001
                        ok, msg, ratio = False, f"{type(exc).__name__}: {exc}", None
                    self.failed |= not ok
                    self.data["checks"].append({"kernel": name, "shape": shape.name, "kind": kind,
                                                "ok": ok, "message": msg, "error_ratio": ratio})
                    print(f"{'PASS' if ok else 'FAIL'} {name:12s} {shape.name:58s} {kind:12s} {msg}",
                          flush=True)
            self.save()

    def contestants(self) -> dict:
        out = {}
        for name in self.t.baseline_names(self.device):
            out[name] = self.t.baseline(name, self.device)
        try:
            if self.device != "cuda":
                raise RuntimeError("GPU only")
            out["flashinfer"] = flashinfer_baseline()
        except Exception as exc:  # noqa: BLE001 - not installed / no wheel for this torch
            print(f"flashinfer: not timed ({type(exc).__name__}: {str(exc)[:120]})", flush=True)
        self.data["baselines_ran"] = [n for n in out]
        return {**out, **self.kernels}

    def time(self) -> None:
        cont = self.contestants()
        for si, shape in enumerate(self.shapes):
            row = self.data["ms"].setdefault(shape.name, {})
            for name, fn in cont.items():
                try:  # one cache set alive at a time (32 GiB at B 64, S_max 128k)
                    with TimedInputs(self.t, shape, 7, ("gaussian",), si, 0, self.device) as make:
                        row[name] = time_call(fn, make, params=self.params, device=self.device,
                                              expect=shape.out_shape, settle=make.settle).ms
                except Exception as exc:  # noqa: BLE001 - a baseline may refuse a shape
                    row[name] = None
                    self.data["errors"].append({"who": name, "shape": shape.name,
                                                "error": traceback.format_exc()[-1500:]})
                    print(f"  {name} refused {shape.name}: {type(exc).__name__}: {exc}", flush=True)
                finally:  # a refusal's traceback or a compiled graph may pin the 32 GiB set
                    free_device_memory(self.device)
            best = min((row[b] for b in self.data["baselines_ran"] if row.get(b)), default=None)
            print(f"{shape.name:58s} " + " ".join(f"{n}={row[n]:.4f}" if row[n] else f"{n}=-"
                                                 for n in cont), flush=True)
            row["best_baseline"] = best
            self.save()
        summary = {}
        for k in self.kernels:
            ratios = [r["best_baseline"] / r[k] for r in self.data["ms"].values()
                      if r.get(k) and r.get("best_baseline")]
            summary[k] = {"geomean_vs_best_baseline": geomean(ratios), "shapes": len(ratios)}
        self.data["summary"] = summary
        print(json.dumps(summary, indent=1), flush=True)
        self.save()

    def bandwidth(self) -> None:
        copy = copy_bandwidth_gbs()
        bw = {"copy_gbs": copy, "shapes": {}}
        for shape in self.shapes:
            if shape.S != K128:
                continue
            nbytes = self.t.bytes_moved(shape)
            rec = {"bytes": nbytes, "bytes_exact": shape.lengths == "uniform"}
            for who, ms in self.data["ms"].get(shape.name, {}).items():
                if who != "best_baseline" and ms:
                    gbs = nbytes / (ms * 1e-3) / 1e9
                    rec[who] = {"gbs": gbs, "fraction_of_copy": gbs / copy}
            bw["shapes"][shape.name] = rec
            print(f"{shape.name:58s} " + " ".join(
                f"{w}={v['fraction_of_copy']:.2f}" for w, v in rec.items() if isinstance(v, dict))
                + ("" if rec["bytes_exact"] else " (expected bytes)"), flush=True)
        print(f"device-to-device copy: {copy:.0f} GB/s", flush=True)
        self.data["bandwidth"] = bw
        self.save()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernels", nargs="*", default=list(DEFAULT_KERNELS))
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--suite", default="default")
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args(argv)
    b = Bench(args.kernels, args.suite, args.json, args.device)
    if not args.skip_check:
        b.check()
    b.time()
    if args.device == "cuda":
        b.bandwidth()
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main())
