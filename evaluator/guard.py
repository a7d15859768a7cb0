"""Runtime guard of the candidate worker (installed right before the candidate is imported).

`install()` is irreversible:

* it replaces the torch entry points that lead to library attention or matmul/softmax
  (Python level: ``torch.matmul``, ``F.scaled_dot_product_attention``,
  ``Tensor.__matmul__`` ...; dispatcher level: the aten kernels ``mm``, ``bmm``,
  ``_softmax``, the SDPA backends ... for CPU and CUDA) with functions that raise
  `GuardViolation`, so no route (``torch.ops``, ``torch._C``, aliases) reaches them;
* it adds a ``sys.addaudithook`` hook (CPython hooks cannot be removed) that denies
  file writes outside the scratch directory, reads of other processes' /proc entries
  and of credential files, sockets, subprocesses other than Triton's toolchain
  (ptxas, cc, ldconfig), ctypes, thread starts, and - when the candidate's own code is
  the caller - exec/compile, ``sys._getframe``, frame introspection and imports the
  static check forbids;
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
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

from evaluator.static_check import module_verdict


class GuardViolation(Exception):
    """The candidate tried something the evaluator forbids (failure class ``forbidden``)."""


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

# Subprocesses Triton itself runs while compiling (basename of the executable).
_TOOLCHAIN = re.compile(r"^(ptxas(-blackwell)?|ldconfig(\.real)?|cc|c\+\+|g\+\+|gcc(-\d+)?|clang(\+\+)?(-\d+)?"
                        r"|x86_64-linux-gnu-gcc(-\d+)?|nvdisasm|cuobjdump|hipconfig)$")
# Files a candidate may not read even though the filesystem lets it.
_SECRET_FILE = re.compile(r"(^|/)(\.env(\..*)?|.*\.env|\.netrc|\.git-credentials|\.pgpass|credentials(\.json)?"
                          r"|id_(rsa|ed25519|ecdsa)(\.pub)?|.*\.pem|.*\.key|secrets?(\..*)?)$|/\.(ssh|aws|gnupg|config/gh)/")
_PROC_PID = re.compile(r"^/proc/(\d+)(/|$)")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_FS_EVENTS = {"os.rename": 2, "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1,
              "os.chown": 1, "os.symlink": 2, "os.link": 2, "os.truncate": 1, "os.utime": 1,
              "os.chflags": 1, "os.lchflags": 1, "os.setxattr": 1, "os.removexattr": 1,
              "shutil.rmtree": 1, "shutil.copyfile": 2, "shutil.move": 2, "os.mkfifo": 1, "os.mknod": 1}
# Denied whoever asks (nothing trusted needs them once the candidate is loaded).
_ALWAYS_DENY_PREFIX = ("socket.", "winreg.", "msvcrt.")
_ALWAYS_DENY = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                "os.kill", "os.killpg", "pty.spawn", "webbrowser.open", "urllib.Request",
                "http.client.connect", "ftplib.connect", "smtplib.connect", "imaplib.open",
                "poplib.connect", "telnetlib.Telnet.open", "os.setuid", "os.setgid", "signal.pthread_kill"}
# Denied while candidate code is anywhere on the stack (torch/triton may use them lazily).
_STACK_DENY_PREFIX = ("ctypes.",)
_STACK_DENY = {"sys.settrace", "sys.setprofile", "sys._current_frames", "sys.set_asyncgen_hooks",
               "os.putenv", "os.unsetenv", "_thread.start_new_thread", "resource.setrlimit",
               "mmap.__new__", "signal.signal", "sys.addaudithook"}
_CALLER_DENY = {"exec", "compile", "sys._getframe", "sys._getframemodulename", "object.__getattr__",
                "object.__setattr__", "object.__delattr__", "function.__new__", "code.__new__",
                "builtins.id", "gc.get_objects", "gc.get_referrers", "gc.get_referents"}


class _State:
    installed = False
    scratch: str = ""
    candidate: str = ""
    violations: list[str] = []
    snapshot: dict[str, Any] = {}
    replaced: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    py_threads = 0
    torch_threads: int | None = None
    lib: Any = None
    busy = threading.local()


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
    def denied(*_a: Any, **_k: Any) -> Any:
        msg = f"{name} is forbidden in a candidate (library attention / matmul / softmax route)"
        _record(msg)
        raise GuardViolation(msg)
    denied.__name__ = denied.__qualname__ = f"guard_denied_{name.replace('.', '_')}"
    return denied


def _record(msg: str) -> None:
    if len(_State.violations) < 50:
        _State.violations.append(msg)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _abspath(p: Any) -> str | None:
    if isinstance(p, int):
        return None
    try:
        p = os.fsdecode(p)
    except TypeError:
        return None
    return os.path.normpath(os.path.join(os.getcwd(), p)) if not os.path.isabs(p) else os.path.normpath(p)


def _candidate_frames() -> tuple[bool, bool]:
    """(candidate code is the direct caller, candidate code is anywhere on the stack)."""
    f = sys._getframe(3)  # 0 this, 1 _audit, 2 _hook, 3 the code that raised the event
    direct = f is not None and f.f_code.co_filename == _State.candidate
    anywhere = direct
    while f is not None and not anywhere:
        anywhere = f.f_code.co_filename == _State.candidate
        f = f.f_back
    return direct, anywhere


def _deny(event: str, detail: str) -> None:
    msg = f"runtime guard: {event} denied ({detail})"
    _record(msg)
    raise GuardViolation(msg)


def _check_write(event: str, path: Any) -> None:
    p = _abspath(path)
    if p is None or p == os.devnull or _under(p, _State.scratch):
        return
    _deny(event, f"write outside the scratch directory: {p}")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if getattr(_State.busy, "on", False):
        return
    _State.busy.on = True
    try:
        _audit(event, args)
    except GuardViolation:
        raise
    except Exception as e:  # a bug in the guard must not break trusted code silently
        _record(f"runtime guard internal error on {event}: {type(e).__name__}: {e}")
    finally:
        _State.busy.on = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
            isinstance(mode, str) and any(c in mode for c in "wax+"))
        if writing:
            _check_write(event, path)
        p = _abspath(path)
        if p is not None:
            m = _PROC_PID.match(p)
            if m and int(m.group(1)) != os.getpid():
                _deny(event, f"another process's /proc entry: {p}")
            if _SECRET_FILE.search(p):
                _deny(event, f"credential-like file: {p}")
        return
    if event in _FS_EVENTS:
        for a in args[:_FS_EVENTS[event]]:
            _check_write(event, a)
        return
    if event == "subprocess.Popen":
        exe = args[0] if args and args[0] else (args[1][0] if len(args) > 1 and args[1] else "")
        exe_s = os.fsdecode(exe) if isinstance(exe, (str, bytes, os.PathLike)) else str(exe)
        exe_p = _abspath(exe_s) or exe_s
        if not _TOOLCHAIN.match(os.path.basename(exe_s)) or _under(exe_p, _State.scratch):
            _deny(event, f"subprocess {exe_s!r}")
        return
    if event.startswith(_ALWAYS_DENY_PREFIX) or event in _ALWAYS_DENY:
        _deny(event, "not allowed in the candidate process")
    if event.startswith(_STACK_DENY_PREFIX) or event in _STACK_DENY:
        if _candidate_frames()[1]:
            _deny(event, "not allowed from candidate code")
        return
    if event == "import":
        direct, _ = _candidate_frames_import()
        if direct:
            why = module_verdict(str(args[0]))
            if why:
                _deny(event, f"import {args[0]}: {why}")
        return
    if event in _CALLER_DENY:
        direct, _ = _candidate_frames()
        if direct:
            _deny(event, "introspection / dynamic code from the candidate")


def _candidate_frames_import() -> tuple[bool, bool]:
    """Like _candidate_frames, skipping the import machinery's own frames."""
    f = sys._getframe(3)
    while f is not None and (f.f_code.co_filename.startswith("<frozen importlib") or "importlib" in f.f_code.co_filename):
        f = f.f_back
    return (f is not None and f.f_code.co_filename == _State.candidate), False


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
            for key in _ATEN_KEYS:
                try:
                    lib.impl(op, _raiser(f"aten::{op}"), key)
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
                if _stack_has_candidate():
                    _deny(f"thread start ({_name})", "threads are not allowed in a candidate")
                return _orig(*a, **k)

            setattr(owner, name, start)
            _State.replaced[f"{owner.__name__}.{name}"] = start


def _stack_has_candidate() -> bool:
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_filename == _State.candidate:
            return True
        f = f.f_back
    return False


def _take_snapshot() -> None:
    for mod_path, attr in _SNAPSHOT:
        owner = _owner(mod_path)
        if owner is not None and hasattr(owner, attr):
            _State.snapshot[f"{mod_path}.{attr}"] = getattr(owner, attr)
    _State.modules = {m: sys.modules[m] for m in _MODULES if m in sys.modules}
    _State.py_threads = threading.active_count()
    torch = sys.modules.get("torch")
    _State.torch_threads = torch.get_num_threads() if torch is not None else None


def install(*, scratch_dir: Path, candidate_path: Path) -> None:
    """Arm the guard for the rest of this process's life (call right before importing the candidate)."""
    if _State.installed:
        raise RuntimeError("guard already installed")
    import json  # noqa: F401  (snapshotted below)
    try:
        import triton.testing  # noqa: F401  (snapshotted below, so a patch is seen)
    except ImportError:
        pass
    _State.scratch = os.path.realpath(scratch_dir)
    _State.candidate = str(Path(candidate_path).resolve())
    _replace_torch()
    _wrap_thread_starts()
    _take_snapshot()
    _State.installed = True
    sys.addaudithook(_hook)
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
    for name, fn in _State.snapshot.items():
        mod_path, _, attr = name.rpartition(".")
        owner = _owner(mod_path)
        if owner is None or getattr(owner, attr, None) is not fn:
            return f"tampering: {name} was replaced"
    for name, fn in _State.replaced.items():
        mod_path, _, attr = name.rpartition(".")
        owner = _owner(mod_path)
        if owner is None or getattr(owner, attr, None) is not fn:
            return f"tampering: the guard's replacement of {name} was removed"
    for name, mod in _State.modules.items():
        if sys.modules.get(name) is not mod:
            return f"tampering: module {name} was swapped in sys.modules"
    if threading.active_count() > _State.py_threads:
        return f"a thread was started ({threading.active_count()} Python threads, {_State.py_threads} at start)"
    torch = sys.modules.get("torch")
    if torch is not None and _State.torch_threads is not None and torch.get_num_threads() != _State.torch_threads:
        return "tampering: torch's thread count was changed"
    return None
