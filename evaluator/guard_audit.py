"""The audit-hook rules of the runtime guard (see evaluator/guard.py).

`arm(scratch, candidates, record)` returns the hook for ``sys.addaudithook``. Who asks
matters for some events, so the hook looks at the Python stack:

* always denied: writes outside the scratch directory (``open`` for writing, rename,
  remove, mkdir ...), sockets, ``os.system``/``exec*``/``spawn*``/``fork``/``kill``,
  subprocesses that are not Triton's toolchain started by Triton's own code;
* denied while candidate code is anywhere on the stack: ctypes, tracing/profiling hooks,
  frame listing, ``mmap``, signal handlers, reads of other processes' /proc entries, of
  raw process memory (``/proc/self/mem``), of credential files and of the hidden files
  (the target file: evaluator/targets/plugin.py), and writes under the protected
  directories (the worker's outputs, which the checker judges later, and the candidate
  sources);
* denied when candidate code is the direct caller: exec/compile, ``sys._getframe``,
  frame/code attribute access, ``gc`` heap walks, ``id()``, environment writes, and
  imports that the static check forbids.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

_TOOLCHAIN = re.compile(r"^(ptxas(-blackwell)?|ldconfig(\.real)?|cc|c\+\+|g\+\+|gcc(-\d+)?|clang(\+\+)?(-\d+)?"
                        r"|x86_64-linux-gnu-gcc(-\d+)?|aarch64-linux-gnu-gcc(-\d+)?|nvdisasm|cuobjdump)$")
_SECRET_FILE = re.compile(r"(^|/)(\.env(\.[\w-]+)?|[\w-]+\.env|\.netrc|\.git-credentials|\.pgpass|\.pypirc"
                          r"|credentials(\.json)?|id_(rsa|ed25519|ecdsa)(\.pub)?)$"
                          r"|/\.(ssh|aws|gnupg|docker|kube|azure)/|/\.config/(gh|gcloud|openai)/")
_PROC_PID = re.compile(r"^/proc/(\d+)(/|$)")
_PROC_MEM = re.compile(r"^/proc/(self|thread-self|\d+)/(task/\d+/)?(mem|pagemap|map_files)(/|$)")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# event -> how many leading arguments are paths that get modified
_FS_EVENTS = {"os.rename": 2, "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1,
              "os.chown": 1, "os.symlink": 2, "os.link": 2, "os.truncate": 1, "os.utime": 1,
              "os.chflags": 1, "os.lchflags": 1, "os.setxattr": 1, "os.removexattr": 1,
              "shutil.rmtree": 1, "shutil.copyfile": 2, "shutil.move": 2, "os.mkfifo": 1,
              "os.mknod": 1}
_ALWAYS_PREFIX = ("socket.", "winreg.", "msvcrt.")
_ALWAYS = {"os.system", "os.exec", "os.spawn", "os.fork", "os.forkpty", "os.kill",
           "os.killpg", "pty.spawn", "webbrowser.open", "urllib.Request", "http.client.connect",
           "ftplib.connect", "smtplib.connect", "imaplib.open", "poplib.connect",
           "telnetlib.Telnet.open", "os.setuid", "os.setgid", "signal.pthread_kill"}
_STACK_PREFIX = ("ctypes.",)
_STACK = {"sys.settrace", "sys.setprofile", "sys._current_frames", "sys.set_asyncgen_hooks",
          "_thread.start_new_thread", "resource.setrlimit", "mmap.__new__", "signal.signal",
          "sys.addaudithook"}
_DIRECT = {"exec", "compile", "sys._getframe", "sys._getframemodulename", "object.__getattr__",
           "object.__setattr__", "object.__delattr__", "function.__new__", "code.__new__",
           "builtins.id", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.putenv",
           "os.unsetenv"}
# frames of these files are skipped when looking for "who asked"
_PLUMBING = ("/subprocess.py", "/os.py", "<frozen importlib", "/importlib/", "<frozen os>")


class GuardViolation(Exception):
    """The candidate tried something the evaluator forbids (failure class ``forbidden``)."""


@dataclass
class _Policy:
    scratch: str
    candidate: tuple[str, ...]  # the candidate files (a rematch imports two)
    trusted_dirs: tuple[str, ...]  # Triton's own code: it may start its toolchain
    record: Callable[[str], None]
    module_verdict: Callable[[str], str | None]
    hidden: tuple[str, ...] = ()  # real paths candidate code may not open (the target file)
    protected: tuple[str, ...] = ()  # real dirs candidate code may not write under (out/, candidate/)
    busy: threading.local = field(default_factory=threading.local)  # the hook is not re-entered


def arm(scratch: str, candidate: tuple[str, ...], trusted_dirs: tuple[str, ...], record: Callable[[str], None],
        module_verdict: Callable[[str], str | None], hidden: tuple[str, ...] = (),
        protected: tuple[str, ...] = ()) -> Callable[[str, tuple], None]:
    candidate = (candidate,) if isinstance(candidate, str) else tuple(candidate)  # `in` on a str: substrings
    pol = _Policy(scratch, candidate, trusted_dirs, record, module_verdict, hidden, protected)

    def hook(event: str, args: tuple) -> None:
        if getattr(pol.busy, "on", False):
            return
        pol.busy.on = True
        try:
            _audit(pol, event, args, sys._getframe(1))
        except GuardViolation:
            raise
        except Exception as e:  # noqa: BLE001 - a guard bug must be visible, not silent
            pol.record(f"runtime guard internal error on {event}: {type(e).__name__}: {e}")
        finally:
            pol.busy.on = False

    return hook


def _deny(pol: _Policy, event: str, detail: str) -> None:
    msg = f"runtime guard: {event} denied ({detail})"
    pol.record(msg)
    raise GuardViolation(msg)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _abspath(p: Any) -> str | None:
    if isinstance(p, int):
        return None
    try:
        p = os.fsdecode(p)
    except TypeError:
        return None
    return os.path.normpath(p if os.path.isabs(p) else os.path.join(os.getcwd(), p))


def on_stack(candidates: tuple[str, ...], frame: Any) -> bool:
    """Whether a frame of one of the files ``candidates`` is on the stack from ``frame`` outwards."""
    while frame is not None:
        if frame.f_code.co_filename in candidates:
            return True
        frame = frame.f_back
    return False


def _asker(frame: Any) -> str:
    """File name of the first frame that is not import/os/subprocess plumbing."""
    while frame is not None and any(p in frame.f_code.co_filename for p in _PLUMBING):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else ""


def _is_import_machinery(frame: Any) -> bool:
    name = frame.f_code.co_filename
    return name.startswith("<frozen importlib") or "/importlib/" in name


def _check_write(pol: _Policy, event: str, path: Any) -> None:
    p = _abspath(path)
    if p is None or p == os.devnull:
        return
    real = os.path.realpath(p)   # a symlink inside scratch may point outside
    if _under(real, pol.scratch):
        return
    _deny(pol, event, f"write outside the scratch directory: {p}")


def _check_protected(pol: _Policy, event: str, path: Any, frame: Any) -> None:
    p = _abspath(path)
    if p is None or not pol.protected:
        return
    real = os.path.realpath(p)
    if any(_under(real, d) for d in pol.protected) and on_stack(pol.candidate, frame):
        _deny(pol, event, f"write to a worker's own file (outputs the checker judges, sources): {p}")


def _audit(pol: _Policy, event: str, args: tuple, frame: Any) -> None:
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if (isinstance(flags, int) and flags & _WRITE_FLAGS) or (isinstance(mode, str) and any(c in mode for c in "wax+")):
            _check_write(pol, event, path)
            _check_protected(pol, event, path, frame)
        p = _abspath(path)
        if p is not None and pol.hidden and os.path.realpath(p) in pol.hidden and on_stack(pol.candidate, frame):
            _deny(pol, event, f"the target file: {p}")
        if p is not None and (p.startswith("/proc/") or _SECRET_FILE.search(p)) and on_stack(pol.candidate, frame):
            m = _PROC_PID.match(p)
            if m and int(m.group(1)) != os.getpid():
                _deny(pol, event, f"another process's /proc entry: {p}")
            if _PROC_MEM.match(p):
                _deny(pol, event, f"raw process memory: {p}")
            if _SECRET_FILE.search(p):
                _deny(pol, event, f"credential-like file: {p}")
        return
    if event in _FS_EVENTS:
        for a in args[:_FS_EVENTS[event]]:
            _check_write(pol, event, a)
            _check_protected(pol, event, a, frame)
        return
    if event in ("subprocess.Popen", "os.posix_spawn"):   # subprocess may use posix_spawn
        exe = args[0] if args and args[0] else (args[1][0] if len(args) > 1 and args[1] else "")
        exe_s = os.fsdecode(exe) if isinstance(exe, (str, bytes, os.PathLike)) else str(exe)
        who = _asker(frame)
        if (not _TOOLCHAIN.match(os.path.basename(exe_s)) or _under(_abspath(exe_s) or "", pol.scratch)
                or not any(_under(who, d) for d in pol.trusted_dirs)):
            _deny(pol, event, f"subprocess {exe_s!r} started from {os.path.basename(who) or '?'}")
        return
    if event.startswith(_ALWAYS_PREFIX) or event in _ALWAYS:
        _deny(pol, event, "not allowed in the candidate process")
    if event.startswith(_STACK_PREFIX) or event in _STACK:
        if on_stack(pol.candidate, frame):
            _deny(pol, event, "not allowed from candidate code")
        return
    if event == "import":
        if _asker(frame) in pol.candidate:
            why = pol.module_verdict(str(args[0]))
            if why:
                _deny(pol, event, f"import {args[0]}: {why}")
        return
    if event in ("exec", "compile") and frame is not None and _is_import_machinery(frame):
        return   # the import system compiling/running a module's source: the import was vetted above
    if event in _DIRECT and _asker(frame) in pol.candidate:
        _deny(pol, event, "introspection / dynamic code from the candidate")
