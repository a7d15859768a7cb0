"""Runtime guard of the candidate worker (installed right before the candidate is imported).

`install()` is irreversible:

* it replaces the torch entry points that lead to library attention or matmul/softmax
  (Python level: ``torch.matmul``, ``F.scaled_dot_product_attention``,
  ``Tensor.__matmul__`` ...; dispatcher level: the aten kernels ``mm``, ``bmm``,
  ``_softmax``, the SDPA backends ... with every overload (``mm.out``, ``baddbmm_``
  is its own operator) for CPU and CUDA) with functions that raise
  `GuardViolation`, so no route (``torch.ops``, ``torch._C``, aliases) reaches them;
* it wraps thread starts (denied from candidate code) and adds a ``sys.addaudithook``
  hook (CPython hooks cannot be removed; rules in evaluator/guard_audit.py) that denies
  file writes outside the scratch directory, sockets, processes other than Triton's
  own toolchain, ctypes, and introspection / dynamic code from the candidate;
* it drops the evaluator's modules from ``sys.modules`` so importing them is a real,
  audited (and denied) import;
* it snapshots the functions the worker's timing and I/O rely on.

`check_integrity()` (called after each candidate call) reports tampering: a snapshot
function replaced, a guard replacement removed, a module swapped in ``sys.modules``,
a Python thread started, the torch thread count changed, or any violation that the
candidate caught and swallowed.

Nothing trusted may need the denied torch operators after `install()`: the worker
times its baselines before, and the reference lives in the separate checker process.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

from evaluator.guard_audit import GuardViolation, arm, on_stack
from evaluator.static_check import module_verdict

__all__ = ["GuardViolation", "install", "check_integrity"]


# Python-level entry points replaced by raisers: (module path, attribute).
_PY_DENY: tuple[tuple[str, str], ...] = (
    ("torch", "matmul"), ("torch", "mm"), ("torch", "bmm"), ("torch", "baddbmm"), ("torch", "addmm"),
    ("torch", "einsum"), ("torch", "softmax"), ("torch", "log_softmax"), ("torch", "tensordot"),
    ("torch", "chain_matmul"), ("torch", "_softmax"),
    ("torch.Tensor", "matmul"), ("torch.Tensor", "__matmul__"), ("torch.Tensor", "__rmatmul__"),
    ("torch.Tensor", "__imatmul__"), ("torch.Tensor", "mm"), ("torch.Tensor", "bmm"),
    ("torch.Tensor", "softmax"), ("torch.Tensor", "log_softmax"),
    ("torch.nn.functional", "scaled_dot_product_attention"), ("torch.nn.functional", "softmax"),
    ("torch.nn.functional", "log_softmax"), ("torch.nn.functional", "linear"),
    ("torch.nn.functional", "multi_head_attention_forward"),
    ("torch.nn.attention.flex_attention", "flex_attention"),
    # file writes from C++ (no audit event): a storage mapped from a file with shared=True
    ("torch", "from_file"), ("torch.UntypedStorage", "from_file"), ("torch.TypedStorage", "from_file"),
)
# Dispatcher-level aten kernels overridden for these keys (catches torch.ops/_C routes).
_ATEN_DENY: tuple[str, ...] = (
    "mm", "bmm", "addmm", "baddbmm", "addbmm", "addmv", "mv", "dot", "vdot", "_addmm_activation",
    "_softmax", "_log_softmax", "_safe_softmax",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward",
    "_efficient_attention_forward", "_cudnn_attention_forward",
    "convolution", "_convolution", "cudnn_convolution",
    # the same GEMMs under other operator names: in-place methods (x.baddbmm_), convolutions
    # that are one GEMM (conv_tbc, the backends' own entry points), int8/fp8/grouped GEMMs
    "addmm_", "addbmm_", "baddbmm_", "addmv_", "conv_tbc", "cudnn_convolution_transpose",
    "cudnn_convolution_relu", "cudnn_convolution_add_relu", "miopen_convolution",
    "miopen_convolution_transpose", "miopen_depthwise_convolution", "mkldnn_convolution",
    "_int_mm", "_scaled_mm", "_grouped_mm", "_scaled_grouped_mm", "_weight_int8pack_mm",
    "_weight_int4pack_mm", "_cslt_sparse_mm", "_mixed_dtypes_linear",
)
_ATEN_KEYS: tuple[str, ...] = ("CPU", "CUDA")

# Functions the worker relies on; replacing any of them is tampering.
_SNAPSHOT: tuple[tuple[str, str], ...] = (
    ("time", "perf_counter"), ("time", "perf_counter_ns"), ("time", "time"), ("time", "monotonic"),
    ("time", "sleep"), ("torch", "empty"), ("torch", "empty_like"), ("torch", "zeros"),
    ("torch", "randn"), ("torch", "allclose"), ("torch", "save"), ("torch", "get_num_threads"),
    ("torch.Tensor", "clone"), ("torch.Tensor", "copy_"), ("torch.Tensor", "cpu"),
    ("torch.Tensor", "to"), ("torch.Tensor", "zero_"), ("torch.Tensor", "data_ptr"),
    ("torch.Tensor", "__eq__"), ("torch.Tensor", "__sub__"), ("torch.Tensor", "abs"),
    ("torch.Tensor", "max"), ("torch.cuda", "synchronize"), ("torch.cuda", "current_stream"),
    ("torch.cuda.Event", "record"), ("torch.cuda.Event", "elapsed_time"),
    ("torch.cuda.Event", "synchronize"), ("triton.testing", "do_bench"),
    ("triton", "jit"), ("triton", "autotune"), ("json", "dumps"), ("json", "dump"),
    ("builtins", "open"), ("builtins", "print"), ("builtins", "isinstance"), ("builtins", "type"),
)
# Modules whose sys.modules entry must stay the same object.
_MODULES: tuple[str, ...] = (
    "torch", "triton", "triton.language", "time", "json", "builtins", "os", "sys",
    "torch.cuda", "triton.testing", "numpy",
)

class _State:
    installed = False
    scratch: str = ""
    candidates: tuple[str, ...] = ()
    violations: list[str] = []
    snapshot: dict[str, Any] = {}
    replaced: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    py_threads = 0
    torch_threads: int | None = None
    lib: Any = None


def _owner(path: str) -> Any:
    """The object named by a dotted path (a loaded module, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None:
            obj: Any = mod
            for p in parts[i:]:
                obj = getattr(obj, p, None)
                if obj is None:
                    return None
            return obj
    return None


def _raiser(name: str) -> Callable[..., Any]:
    why = "file I/O" if name.endswith("from_file") else "library attention / matmul / softmax route"

    def denied(*_a: Any, **_k: Any) -> Any:
        msg = f"{name} is forbidden in a candidate ({why})"
        _record(msg)
        raise GuardViolation(msg)
    denied.__name__ = denied.__qualname__ = f"guard_denied_{name.replace('.', '_')}"
    return denied


def _record(msg: str) -> None:
    if len(_State.violations) < 50:
        _State.violations.append(msg)


def _replace_torch() -> None:
    for mod_path, attr in _PY_DENY:
        owner = _owner(mod_path)
        if owner is None or not hasattr(owner, attr):
            continue
        fn = _raiser(f"{mod_path}.{attr}")
        setattr(owner, attr, fn)
        _State.replaced[f"{mod_path}.{attr}"] = fn
    torch = sys.modules.get("torch")
    if torch is None:
        return
    lib = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op in _ATEN_DENY:
            packet = getattr(torch.ops.aten, op, None)
            overloads = packet.overloads() if packet is not None else ["default"]
            for ov in overloads:  # every overload: mm.out, mm.dtype ... are separate kernels
                name = op if ov == "default" else f"{op}.{ov}"
                for key in _ATEN_KEYS:
                    try:
                        lib.impl(name, _raiser(f"aten::{name}"), key)
                    except Exception:  # the op does not exist in this torch build
                        pass
    _State.lib = lib


def _wrap_thread_starts() -> None:
    """Deny thread starts from candidate code (CPython < 3.13 raises no audit event for them)."""
    import _thread

    for owner, names in ((threading, ("_start_new_thread", "_start_joinable_thread")),
                         (_thread, ("start_new_thread", "start_joinable_thread", "start_new"))):
        for name in names:
            orig = getattr(owner, name, None)
            if orig is None:
                continue

            def start(*a: Any, _orig: Any = orig, _name: str = name, **k: Any) -> Any:
                if on_stack(_State.candidates, sys._getframe(1)):
                    msg = f"runtime guard: thread start ({_name}) denied (threads are not allowed in a candidate)"
                    _record(msg)
                    raise GuardViolation(msg)
                return _orig(*a, **k)

            setattr(owner, name, start)
            _State.replaced[f"{owner.__name__}.{name}"] = start


def _take_snapshot() -> None:
    for mod_path, attr in _SNAPSHOT:
        owner = _owner(mod_path)
        if owner is not None and hasattr(owner, attr):
            _State.snapshot[f"{mod_path}.{attr}"] = getattr(owner, attr)
    _State.modules = {m: sys.modules[m] for m in _MODULES if m in sys.modules}
    _State.py_threads = threading.active_count()
    torch = sys.modules.get("torch")
    _State.torch_threads = torch.get_num_threads() if torch is not None else None


def install(*, scratch_dir: Path, candidate_path: Path | list[Path], hidden_paths: list[str] | tuple = (),
            protected_dirs: list[Path] | tuple = ()) -> None:
    """Arm the guard for the rest of this process's life (call right before importing the
    candidate). ``candidate_path``: the candidate file, or every one of them (a rematch
    imports challenger and champion: the stack rules hold for both). ``hidden_paths``:
    files candidate code may not open (the target file); ``protected_dirs``: directories
    inside the scratch dir that candidate code may not write under (the worker's outputs,
    the candidate sources)."""
    if _State.installed:
        raise RuntimeError("guard already installed")
    import json  # noqa: F401  (snapshotted below)
    for name in ("triton.testing", "torch.nn.attention.flex_attention"):
        try:  # loaded now so that a patch is seen / the library route is replaced
            __import__(name)
        except Exception:  # noqa: BLE001 - absent in this build
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        # cached from now on; computed later it would dlopen NVML through ctypes (denied with
        # candidate code on the stack), e.g. under torch.cuda.get_device_capability()
        torch.cuda.device_count()
    _State.scratch = os.path.realpath(scratch_dir)
    paths = candidate_path if isinstance(candidate_path, (list, tuple)) else [candidate_path]
    _State.candidates = tuple(str(Path(p).resolve()) for p in paths)
    _replace_torch()
    _wrap_thread_starts()
    _take_snapshot()
    _State.installed = True
    triton = sys.modules.get("triton")
    trusted = tuple(os.path.dirname(os.path.realpath(m.__file__)) for m in (triton,) if m is not None)
    hidden = tuple(os.path.realpath(p) for p in hidden_paths)
    protected = tuple(os.path.realpath(p) for p in protected_dirs)
    sys.addaudithook(arm(_State.scratch, _State.candidates, trusted, _record, module_verdict, hidden,
                         protected))
    _hide_trusted_modules()


def _hide_trusted_modules() -> None:
    """Drop the evaluator's (and orchestrator's) modules from sys.modules: the worker keeps
    its references, and a candidate that imports them gets a real import, which the audit
    hook sees and denies (a cached import raises no audit event)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("evaluator", "evolve", "dashboard"):
            del sys.modules[name]


def check_integrity() -> str | None:
    """A message when the candidate tampered with the process since install(), else None."""
    if not _State.installed:
        return "guard not installed"
    if _State.violations:
        return _State.violations[0]
    for table, what in ((_State.snapshot, "{} was replaced"),
                        (_State.replaced, "the guard's replacement of {} was removed")):
        for name, fn in table.items():
            mod_path, _, attr = name.rpartition(".")
            owner = _owner(mod_path)
            if owner is None or getattr(owner, attr, None) is not fn:
                return "tampering: " + what.format(name)
    for name, mod in _State.modules.items():
        if sys.modules.get(name) is not mod:
            return f"tampering: module {name} was swapped in sys.modules"
    if threading.active_count() > _State.py_threads:
        return f"a thread was started ({threading.active_count()} Python threads, {_State.py_threads} at start)"
    torch = sys.modules.get("torch")
    if torch is not None and _State.torch_threads is not None and torch.get_num_threads() != _State.torch_threads:
        return "tampering: torch's thread count was changed"
    return None
