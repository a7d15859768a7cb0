"""The worker's profiling (GPU only): compile info of every Triton specialisation the
candidate compiled, and the ``profile`` stage for one requested shape.

* ``CompileLog`` is installed as Triton's ``knobs.compilation.listener`` by trusted code
  before the candidate is imported: it notes each compile's time and cache hit (by the
  kernel's hash) and the JIT functions compiled. ``collect`` reads, after timing, every
  ``CompiledKernel`` in those functions' kernel caches: ``n_regs``, ``n_spills`` (known
  once the binary is loaded; a kernel compiled but never launched is loaded here), and
  ``metadata.shared/num_warps/num_stages``; with a profile requested, also the cubins of
  the kernels that wait with a wgmma group in flight, written for the parent to
  disassemble (``sass_file``; evaluator/sass.py: the worker may not start nvdisasm).
* ``profile_shape`` times ``calls`` calls of the candidate on one shape with CUDA events
  (median, no L2 flush: the kernel's steady-state time), then lists the GPU kernels of a
  few more calls with ``torch.profiler`` (CUPTI; its lazy imports were done by
  ``install`` before the guard was armed).

Everything here runs after candidate code and reads objects it could have replaced: it
is best effort (an exception becomes a note), bounded, and validated by the parent
(profiling.py). It never affects the score: the timing stage is over by then.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

from evaluator import sass
from evaluator.profiling import MAX_KERNELS, MAX_PROFILE_KERNELS

PROFILER_CALLS = 3
WARMUP_CALLS = 3
MAX_SASS = 16  # cubins written at most (sass_dir)
SASS_DIR = "sass"  # under the worker's out dir


class CompileLog:
    """Triton's compilation listener: compile seconds and cache hit by kernel hash, and the
    JIT functions seen compiling (at most ``MAX_KERNELS``)."""

    def __init__(self) -> None:
        self.times: dict[str, tuple[float, bool]] = {}
        self.fns: list[Any] = []

    def __call__(self, *, src: Any = None, metadata: Any = None, metadata_group: Any = None,
                 times: Any = None, cache_hit: bool = False) -> None:
        try:
            if len(self.times) < 4 * MAX_KERNELS:
                self.times[str(metadata["hash"])] = (float(times.total) / 1e6, bool(cache_hit))
            fn = getattr(src, "fn", None)
            if fn is not None and len(self.fns) < MAX_KERNELS and all(f is not fn for f in self.fns):
                self.fns.append(fn)
        except Exception:  # noqa: BLE001 - display only
            pass


def install(*, profiler: bool) -> CompileLog:
    """Set a fresh ``CompileLog`` as Triton's compilation listener; ``profiler``: also run
    an empty torch.profiler session, whose first start imports torch._inductor (and writes
    a temp file): trusted work that must not happen once the guard is armed."""
    import triton

    log = CompileLog()
    triton.knobs.compilation.listener = log
    if profiler:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            pass
        prof.events()
    return log


def spec_of(kernel: Any) -> str:
    """``NAME=value`` of the specialisation's constexpr arguments."""
    src = kernel.src
    names = src.fn.arg_names
    sig = src.signature
    parts = []
    for key, value in sorted(src.constants.items()):
        if len(key) == 1 and key[0] < len(names) and sig.get(names[key[0]]) == "constexpr":
            parts.append(f"{names[key[0]]}={value}")
    return " ".join(parts)


def _cubin(kernel: Any) -> bytes | None:
    """The cubin of a kernel whose PTX waits with a wgmma group in flight, else None."""
    asm = getattr(kernel, "asm", None) or {}
    ptx, cubin = asm.get("ptx"), asm.get("cubin")
    if not (isinstance(ptx, str) and isinstance(cubin, bytes) and sass.WAITS_IN_FLIGHT.search(ptx)):
        return None
    return cubin


def _one(kernel: Any, log: CompileLog, load: bool, sass_file: Path | None = None) -> dict[str, Any]:
    md = kernel.metadata
    if load and getattr(kernel, "module", None) is None:
        try:
            kernel._init_handles()  # loads the binary: registers and spills become known
        except Exception:  # noqa: BLE001 - e.g. out of resources; reported without them
            pass
    compile_s, hit = log.times.get(str(getattr(kernel, "hash", "")), (None, False))
    try:
        spec = spec_of(kernel)
    except Exception:  # noqa: BLE001
        spec = ""
    written = None
    if sass_file is not None:
        try:
            cubin = _cubin(kernel)
            if cubin is not None and len(cubin) <= sass.MAX_CUBIN_BYTES:
                sass_file.write_bytes(cubin)
                written = sass_file.name
        except Exception:  # noqa: BLE001 - display only
            pass
    return {"kernel": str(kernel.name), "spec": spec,
            "registers": getattr(kernel, "n_regs", None), "spills": getattr(kernel, "n_spills", None),
            "shared": getattr(md, "shared", None), "num_warps": getattr(md, "num_warps", None),
            "num_stages": getattr(md, "num_stages", None), "compile_s": compile_s, "cache_hit": hit,
            "sass_file": written}


def collect(log: CompileLog, *, load: bool = True, sass_dir: Path | None = None) -> list[dict[str, Any]]:
    """One record per compiled specialisation of the functions ``log`` saw compiling.
    ``load``: load binaries not loaded yet (not after a CUDA fault); ``sass_dir``: also
    write there the cubins of the kernels that wait with a wgmma group in flight (the
    parent disassembles them, ``sass.fill_overlap``; only when a profile was asked
    for)."""
    out: list[dict[str, Any]] = []
    for fn in list(log.fns):
        try:
            caches = list(fn.device_caches.values())
        except Exception:  # noqa: BLE001
            continue
        for entry in caches:
            try:
                kernels = list(entry[0].values())
            except Exception:  # noqa: BLE001
                continue
            for kernel in kernels:
                if len(out) >= MAX_KERNELS:
                    return out
                try:
                    written = sum(1 for r in out if r["sass_file"])
                    sass_file = (sass_dir / f"{len(out)}.cubin"
                                 if sass_dir is not None and written < MAX_SASS else None)
                    out.append(_one(kernel, log, load, sass_file))
                except Exception:  # noqa: BLE001
                    continue
    return out


def profile_shape(call: Callable[[], Any], *, shape: str, calls: int,
                  after_call: Callable[[], None]) -> dict[str, Any]:
    """The profile record of ``shape``: CUDA-event median of ``calls`` calls, then the GPU
    kernels of ``PROFILER_CALLS`` calls under torch.profiler. ``after_call`` (the worker's
    integrity check) runs after each call; a profiler error is a note."""
    import torch

    rec: dict[str, Any] = {"shape": shape, "available": True, "tool": "cuda-events",
                           "kernels": [], "note": ""}
    for _ in range(WARMUP_CALLS):
        call()
        after_call()
    torch.cuda.synchronize()
    times = []
    for _ in range(calls):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        after_call()
        times.append(start.elapsed_time(end))
    rec["event_ms"] = statistics.median(times)
    try:
        rec["kernels"] = _kernel_table(call, after_call)
        rec["tool"] = "cuda-events + torch.profiler"
    except Exception as exc:  # noqa: BLE001 - the events' time stands alone
        rec["note"] = f"torch.profiler unavailable: {type(exc).__name__}: {str(exc)[:200]}"
    return rec


def _kernel_table(call: Callable[[], Any], after_call: Callable[[], None]) -> list[dict[str, Any]]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(PROFILER_CALLS):
            call()
        torch.cuda.synchronize()
    after_call()
    totals: dict[str, list[float]] = {}
    for evt in prof.events():
        if str(getattr(evt, "device_type", "")).endswith("CUDA"):
            t = totals.setdefault(str(evt.name), [0, 0.0])
            t[0] += 1
            t[1] += float(evt.time_range.elapsed_us())
    rows = sorted(totals.items(), key=lambda kv: -kv[1][1])[:MAX_PROFILE_KERNELS]
    return [{"name": name[:120], "calls": int(n // PROFILER_CALLS) or 1,
             "mean_us": total / max(1, n)} for name, (n, total) in rows]
