"""The worker's ``precompile`` stage (GPU only): compile a candidate's Triton kernels in
parallel before the correctness stage instead of one by one on first use.

1. Discovery: the candidate's entry point is called once per validation shape and per
   timed shape on ``torch.empty`` inputs (fresh storage, never checked) while a trusted
   ``triton.knobs.runtime.jit_cache_hook`` (`Recorder`) records every specialisation
   Triton is about to compile -- (JITFunction, specialization_data) -- and returns True,
   so Triton neither compiles nor launches. Autotuners in the candidate's globals get a
   one-call benchmark and no disk cache meanwhile (every config is still discovered).
2. Compile: ``JITFunction.preload(data)`` of each specialisation under Triton's
   ``AsyncCompileMode`` over a ``ThreadPoolExecutor``; finished kernels land in the
   kernel caches, so the correctness and timing calls find them compiled.
3. Afterwards, whatever happened: the hook is restored (and the recorder disarmed: it
   skips nothing even if someone reinstalls it), autotuner caches are cleared (their
   discovery-time "timings" were of skipped launches), the pool is shut down and its
   threads joined -- before the correctness stage, so the guard's thread-count check
   holds. The pool's threads are started by this trusted code (no candidate frame on the
   starting stack, which the guard's thread-start wrapper allows); candidate code that
   runs on them at compile time (Triton evaluates some Python while compiling) is still
   denied thread starts by the same wrapper.

Everything is best effort: an exception in discovery or compile is ignored (the kernel
then compiles lazily, and a real error surfaces in the correctness stage with its normal
class). Bounded by ``max_specs`` specialisations and ``limit_s`` seconds; the worker's
own timeout still applies. The interpreter has nothing to compile: the stage is skipped.
"""

from __future__ import annotations

import importlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from evaluator.inputs import torch_dtype

_JOIN_S = 60.0


@dataclass
class Spec:
    """One specialisation of one Triton JIT function, as Triton serialises it."""

    fn: Any
    data: str


@dataclass
class PrecompileStats:
    found: int = 0
    compiled: int = 0
    failed: int = 0
    discover_s: float = 0.0
    seconds: float = 0.0
    threads: int = 0
    note: str = ""

    def line(self) -> str:
        extra = f"; {self.note}" if self.note else ""
        return (f"[evaluator-worker] precompile: {self.found} specialisations in {self.seconds:.1f} s "
                f"(discovery {self.discover_s:.1f} s, {self.compiled} compiled, {self.failed} failed, "
                f"{self.threads} threads{extra})")


class Recorder:
    """The trusted ``jit_cache_hook``: records, returns True (skip compile and launch) while armed."""

    def __init__(self, max_specs: int):
        self.max_specs = max_specs
        self.armed = True
        self.specs: dict[tuple[int, str], Spec] = {}

    def __call__(self, *, key: Any = None, repr: Any = None, fn: Any = None, compile: Any = None,
                 is_manual_warmup: bool = False, already_compiled: bool = False) -> bool | None:
        if not self.armed:
            return None  # disarmed: a reinstalled recorder skips nothing
        try:
            jf = fn.jit_function
            data = compile["specialization_data"]
            ident = (id(jf), str(key))
            if isinstance(data, str) and ident not in self.specs and len(self.specs) < self.max_specs:
                self.specs[ident] = Spec(jf, data)
        except Exception:  # noqa: BLE001 - best effort
            pass
        return True


_JIT: dict[str, Any] = {}  # {"module": triton.runtime.jit}, taken before the guard is armed


def _runtime_knobs() -> Any:
    """``knobs.runtime`` exactly as Triton's JIT reads it (its module global ``knobs``)."""
    mod = _JIT.get("module")
    if mod is None:
        mod = _JIT["module"] = importlib.import_module("triton.runtime.jit")
    return mod.knobs.runtime


def hook_is_set() -> bool:
    """Whether Triton would consult a ``jit_cache_hook`` now (a broken lookup counts as set)."""
    try:
        return _runtime_knobs().jit_cache_hook is not None
    except Exception:  # noqa: BLE001 - the path Triton reads was tampered with
        return True


def discover(calls: Iterable[Callable[[], Any]], recorder: Recorder, deadline: float) -> list[Spec]:
    """Run ``calls`` with ``recorder`` as Triton's jit_cache_hook; the previous hook is
    restored and the recorder disarmed whatever happens. Exceptions of the calls are ignored."""
    knobs = _runtime_knobs()
    prev = knobs.jit_cache_hook
    knobs.jit_cache_hook = recorder
    try:
        for call in calls:
            if time.monotonic() > deadline or len(recorder.specs) >= recorder.max_specs:
                break
            try:
                call()
            except BaseException:  # noqa: BLE001 - discovery outputs and errors are garbage
                pass
    finally:
        recorder.armed = False
        knobs.jit_cache_hook = prev
    return list(recorder.specs.values())


def preload(spec: Spec) -> Any:
    """Compile one specialisation through Triton's own ``JITFunction.preload`` (the class's
    method: an instance or subclass override is never called)."""
    from triton.runtime.jit import JITFunction

    if not isinstance(spec.fn, JITFunction):
        raise TypeError("not a Triton JITFunction")
    return JITFunction.preload(spec.fn, spec.data)


def compile_all(specs: list[Spec], *, threads: int, deadline: float,
                job: Callable[[Spec], Any] = preload) -> tuple[int, int]:
    """Compile ``specs`` with ``job`` under AsyncCompileMode over ``threads`` pool threads.
    Returns (compiled, failed). Compiles still queued at ``deadline`` are cancelled; the
    pool is shut down and every one of its threads joined before this returns."""
    from triton.runtime._async_compile import AsyncCompileMode

    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="evaluator-precompile")
    failed = 0
    try:
        mode = AsyncCompileMode(pool, ignore_errors=True)
        with mode:
            for spec in specs:
                if time.monotonic() > deadline:
                    break
                try:
                    job(spec)
                except Exception:  # noqa: BLE001 - compiles lazily later
                    failed += 1
            _, pending = wait(list(mode.raw_futures), timeout=max(0.0, deadline - time.monotonic()))
            for fut in pending:
                fut.cancel()
        # AsyncCompileMode.__exit__ finalised the finished compiles (kernel caches filled)
    finally:  # shut down and join its threads (so the guard's thread count is back)
        pool.shutdown(wait=True, cancel_futures=True)
        for t in list(getattr(pool, "_threads", ())):
            t.join(_JOIN_S)
    compiled = 0
    for fut in mode.raw_futures:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            compiled += 1
        elif not fut.cancelled():
            failed += 1
    return compiled, failed


def find_autotuners(namespaces: Iterable[dict[str, Any]]) -> list[Any]:
    """Triton Autotuner objects among the values of ``namespaces`` (module globals), also
    inside decorator chains (``heuristics(autotune(jit(f)))``)."""
    try:
        from triton.runtime.autotuner import Autotuner
        from triton.runtime.jit import KernelInterface
    except ImportError:
        return []
    found: dict[int, Any] = {}
    for ns in namespaces:
        for obj in list(ns.values()):
            for _ in range(6):
                if not isinstance(obj, KernelInterface):
                    break
                if isinstance(obj, Autotuner):
                    found[id(obj)] = obj
                obj = vars(obj).get("fn")
    return list(found.values())


def _one_call_bench(kernel_call: Callable[[], Any], quantiles: Any = None, **_kw: Any) -> Any:
    """Discovery-time autotuner benchmark: one (skipped) launch, equal timings."""
    kernel_call()
    return [1.0, 1.0, 1.0] if quantiles is not None else 1.0


_AUTOTUNER_KEYS = ("do_bench", "cache_results")


@contextmanager
def autotuner_discovery(autotuners: list[Any]) -> Iterator[None]:
    """Autotuners benchmark each config once (its launch is skipped anyway) and write no
    disk cache; afterwards their settings are restored and ``.cache`` is cleared (config
    choices made on skipped launches)."""
    saved: list[tuple[Any, dict[str, Any]]] = []
    for at in autotuners:
        try:
            d = vars(at)
            saved.append((at, {k: d[k] for k in _AUTOTUNER_KEYS if k in d}))
            d["do_bench"] = _one_call_bench
            d["cache_results"] = False
        except Exception:  # noqa: BLE001
            pass
    try:
        yield
    finally:
        for at, old in saved:  # vars(at) worked when it was saved
            d = vars(at)
            for k in _AUTOTUNER_KEYS:
                if k in old:
                    d[k] = old[k]
                else:
                    d.pop(k, None)
        for at in autotuners:
            try:
                at.cache.clear()
            except Exception:  # noqa: BLE001
                pass


def run(calls: list[Callable[[], Any]], namespaces: list[dict[str, Any]], *, threads: int,
        max_specs: int, limit_s: float) -> PrecompileStats:
    """Discovery then parallel compile; never raises for the candidate's errors."""
    t0 = time.monotonic()
    deadline = t0 + limit_s
    stats = PrecompileStats(threads=threads)
    recorder = Recorder(max_specs)
    autotuners = find_autotuners(namespaces)
    try:
        with autotuner_discovery(autotuners):
            specs = discover(calls, recorder, deadline)
        stats.found = len(specs)
        stats.discover_s = time.monotonic() - t0
        if specs:
            stats.compiled, stats.failed = compile_all(specs, threads=threads, deadline=deadline)
    except Exception as exc:  # noqa: BLE001 - best effort; lazy compiles remain
        stats.note = f"stopped: {type(exc).__name__}: {str(exc)[:200]}"
    if time.monotonic() > deadline:
        stats.note = (stats.note + "; " if stats.note else "") + f"time limit {limit_s:g} s reached"
    stats.seconds = time.monotonic() - t0
    return stats


def empty_inputs(shape: Any, device: str) -> tuple[Any, Any, Any]:
    """Uninitialised q, k, v of ``shape``'s sizes, dtype and layout (fresh storage)."""
    import torch

    dt = torch_dtype(shape.dtype)

    def one(h: int) -> Any:
        if shape.layout == "bshd":
            return torch.empty(shape.B, shape.S, h, shape.D, dtype=dt, device=device).transpose(1, 2)
        return torch.empty(shape.B, h, shape.S, shape.D, dtype=dt, device=device)

    return one(shape.Hq), one(shape.Hkv), one(shape.Hkv)


# Modules honest kernels import; loading them before the guard is armed keeps library
# start-up work (source compiles, dataclass exec) out of the candidate's account. The
# precompile stage's own modules are loaded here too (no import after the guard is armed).
KERNEL_LIBRARIES = ("math", "functools", "typing", "dataclasses", "triton", "triton.language",
                    "triton.tools.tensor_descriptor", "triton.runtime.autotuner",
                    "triton.runtime._async_compile", "concurrent.futures.thread")


def preimport_kernel_libraries() -> None:
    sys.dont_write_bytecode = True   # library modules imported later must not write .pyc files
    for name in KERNEL_LIBRARIES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    import torch

    _runtime_knobs()  # holds Triton's JIT module: later checks do not go through sys.modules
    if torch.cuda.is_available():
        # Triton creates its driver on the first launch, probing the platform with
        # subprocesses (`file`, `ldconfig`); do it now, as trusted code. Its platform key
        # (`file` again, cached) is also asked by every launcher it compiles later (Gluon's).
        from triton.runtime import build, driver

        driver.active.get_current_stream(driver.active.get_current_device())
        build.platform_key()
