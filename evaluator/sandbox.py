"""Process confinement for the candidate worker.

`plan(cmd, ...)` wraps the worker's command line in the strongest mechanism this host
offers and builds the scrubbed environment; `apply_in_process(scratch)` adds Landlock
inside the worker itself (right before the candidate is imported).

Mechanisms, strongest first (``EVOLVE_SANDBOX=auto|bwrap|unshare|landlock|none`` forces
one; a forced mechanism that does not work here raises `SandboxUnavailable`):

* ``bwrap``: bubblewrap with new network, PID, IPC and UTS namespaces, ``/`` bound
  read-only, a fresh ``/proc`` and ``/dev`` (plus the ``/dev/nvidia*`` nodes), tmpfs on
  ``/tmp`` and on ``$HOME`` (credentials), the scratch directory the only writable bind,
  all capabilities dropped.
* ``unshare``: util-linux ``unshare`` (root only) with new network, PID and mount
  namespaces; every mount is remounted read-only, the scratch directory bound writable
  again, credential files and directories of ``$HOME`` hidden, capabilities dropped
  with ``setpriv`` (when installed).
* ``landlock``: no wrapper; the worker calls `apply_in_process`, which restricts writes
  to the scratch directory (and device nodes) and, on Landlock ABI >= 4, denies TCP
  bind/connect; on ABI >= 6 also signals and abstract UNIX sockets outside the sandbox.
* ``none``: the scrubbed environment only.

In every mode the environment is an allow-list (no API keys, tokens or unknown
variables ever reach the candidate), and the runtime guard (evaluator/guard.py)
denies writes outside scratch, sockets and subprocesses inside the worker.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODES = ("bwrap", "unshare", "landlock", "none")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Copied from the parent environment when present (never anything else).
_ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_CUDA_ARCH_LIST", "NVIDIA_VISIBLE_DEVICES",
              "NVIDIA_DRIVER_CAPABILITIES", "TRITON_INTERPRET")
_ENV_ALLOW_PREFIX = ("TRITON_",)
# Never copied, whatever the allow-list says.
SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)


class SandboxUnavailable(RuntimeError):
    """A forced sandbox mechanism (EVOLVE_SANDBOX) does not work on this host."""


@dataclass
class SandboxPlan:
    argv: list[str]
    env: dict[str, str]
    isolation: str
    mode: str = "none"


def scrubbed_env(scratch_dir: Path, gpu: int | None, mode: str) -> dict[str, str]:
    """The worker's whole environment: an allow-list plus private HOME/TMPDIR/caches."""
    env: dict[str, str] = {}
    for k, v in os.environ.items():
        if (k in _ENV_ALLOW or k.startswith(_ENV_ALLOW_PREFIX)) and not SECRET_ENV.search(k):
            env[k] = v
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    scratch = Path(scratch_dir)
    home, tmp = scratch / "home", scratch / "tmp"  # the layout of make_scratch
    env.update({
        "HOME": str(home), "TMPDIR": str(tmp), "TRITON_CACHE_DIR": str(scratch / "triton_cache"),
        "TRITON_HOME": str(home), "TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor"),
        "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "EVOLVE_SANDBOX": mode,
    })
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    elif "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return env


# The scratch directory's layout (see spawn.py): the only place the worker may write.
SCRATCH_DIRS = ("work", "home", "triton_cache", "tmp", "candidate", "out")


def make_scratch(base: Path) -> dict[str, Path]:
    dirs = {name: Path(base) / name for name in SCRATCH_DIRS}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs


_SECRET_ENTRIES = (".ssh", ".aws", ".gnupg", ".config", ".docker", ".kube", ".azure", ".netrc",
                   ".git-credentials", ".pypirc", ".npmrc", ".env", ".bash_history", ".python_history",
                   ".local/share/keyrings")


def _home_to_hide(keep: list[Path]) -> tuple[Path | None, list[Path]]:
    """(the parent's home directory when it can be hidden, kept paths below it to re-expose)."""
    home = Path(os.path.expanduser("~")).resolve()
    if str(home) == "/" or not home.is_dir():
        return None, []
    below: list[Path] = []
    for p in keep:
        p = p.resolve()
        if p == home or p in home.parents:
            return None, []
        if home in p.parents and p.exists():
            below.append(p)
    return home, below


def secret_paths() -> list[Path]:
    """Credential files/directories of the parent's home and the repository that the
    sandbox hides (a tmpfs over directories, /dev/null over files)."""
    home = Path(os.path.expanduser("~"))
    out = [home / e for e in _SECRET_ENTRIES] + [REPO_ROOT / ".env"]
    return [p for p in out if p.exists() or p.is_symlink()]


def _keep_paths(cmd: list[str], scratch: Path, ro: list[Path]) -> list[Path]:
    exe = Path(cmd[0]) if cmd else Path(sys.executable)
    return [scratch, REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix), exe.parent, *ro,
            *(Path(p) for p in sys.path if p and os.path.isabs(p))]


def _bwrap_argv(cmd: list[str], scratch: Path, ro: list[Path]) -> list[str]:
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev"]
    if os.geteuid() != 0:
        argv.insert(1, "--unshare-user")
    else:
        argv[1:1] = ["--cap-drop", "ALL"]   # root keeps every capability otherwise (remount rw)
    for node in sorted(Path("/dev").glob("nvidia*")):
        argv += ["--dev-bind", str(node), str(node)]
    argv += ["--proc", "/proc", "--tmpfs", "/tmp"]
    home, below = _home_to_hide(_keep_paths(cmd, scratch, ro))
    if home is not None:
        argv += ["--tmpfs", str(home)]
    for p in secret_paths():
        if p.is_dir():
            argv += ["--tmpfs", str(p)]
        else:
            argv += ["--ro-bind", "/dev/null", str(p)]
    for p in [REPO_ROOT, *ro, *below]:   # re-expose read-only paths that a tmpfs above hides
        if p.exists():
            argv += ["--ro-bind", str(p.resolve()), str(p.resolve())]
    argv += ["--bind", str(scratch), str(scratch), "--"]   # bwrap keeps the caller's cwd
    return argv + list(cmd)


_UNSHARE_SCRIPT = r"""
set -e
mount --make-rprivate /
for mp in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case "$mp" in /proc|/proc/*|/dev|/dev/*|/sys|/sys/*) continue;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
mount --bind "$EVOLVE_SCRATCH" "$EVOLVE_SCRATCH"
mount -o remount,bind,rw "$EVOLVE_SCRATCH"
for p in $EVOLVE_HIDE_DIRS; do mount -t tmpfs -o size=1m,ro tmpfs "$p"; done
for p in $EVOLVE_HIDE_FILES; do mount --bind /dev/null "$p"; done
unset EVOLVE_SCRATCH EVOLVE_HIDE_DIRS EVOLVE_HIDE_FILES
cd -- "$PWD"   # re-enter the cwd through the new (writable) scratch mount
if command -v setpriv >/dev/null 2>&1; then   # drop root's capabilities (no remount rw)
  exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- "$@"
fi
exec "$@"
"""


def _unshare_argv(cmd: list[str], scratch: Path, env: dict[str, str]) -> list[str]:
    """The unshare command line; its script's variables are added to ``env``."""
    secrets = [p for p in secret_paths() if " " not in str(p)]
    env.update({"EVOLVE_SCRATCH": str(scratch),
                "EVOLVE_HIDE_DIRS": " ".join(str(p) for p in secrets if p.is_dir()),
                "EVOLVE_HIDE_FILES": " ".join(str(p) for p in secrets if not p.is_dir())})
    return ["unshare", "--net", "--pid", "--mount", "--ipc", "--uts", "--fork", "--kill-child",
            "--mount-proc", "--", "/bin/sh", "-c", _UNSHARE_SCRIPT, "evolve-sandbox", *cmd]


def _wrap(mode: str, cmd: list[str], scratch: Path, ro: list[Path], env: dict[str, str]) -> list[str]:
    """``cmd`` under ``mode``'s launcher (bwrap, unshare; the others have none)."""
    if mode == "bwrap":
        return _bwrap_argv(cmd, scratch, ro)
    if mode == "unshare":
        return _unshare_argv(cmd, scratch, env)
    return list(cmd)


@functools.lru_cache(maxsize=None)
def _probe(mode: str) -> bool:
    """Whether `mode` really confines here: namespaces may be refused inside containers and
    a read-only remount may silently fail, so the probe writes inside and outside its
    scratch directory and checks from outside that only the first write happened."""
    if mode == "none":
        return True
    if mode == "landlock":
        return landlock_abi() >= 1
    base = Path(tempfile.mkdtemp(prefix="evolve-probe-"))
    tmp, outside = base / "scratch", base / "outside"
    tmp.mkdir()
    outside.mkdir()
    try:
        code = ("import sys\nopen('probe', 'w').write('ok')\n"
                "try:\n    open(sys.argv[1], 'w').write('escaped')\nexcept OSError:\n    pass\n")
        probe = [sys.executable, "-c", code, str(outside / "escaped")]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
        if not shutil.which(mode) or (mode == "unshare" and os.geteuid() != 0):
            return False
        r = subprocess.run(_wrap(mode, probe, tmp, [], env), env=env, cwd=tmp, capture_output=True,
                           timeout=60)
        return (r.returncode == 0 and (tmp / "probe").read_text() == "ok"
                and not (outside / "escaped").exists())
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(base, ignore_errors=True)


def available_modes() -> list[str]:
    """The mechanisms that work on this host, strongest first."""
    return [m for m in MODES if _probe(m)]


def chosen_mode() -> str:
    want = os.environ.get("EVOLVE_SANDBOX", "auto").strip().lower() or "auto"
    if want == "auto":
        return next(m for m in MODES if _probe(m))
    if want not in MODES:
        raise SandboxUnavailable(f"EVOLVE_SANDBOX={want!r}: expected auto, {', '.join(MODES)}")
    if not _probe(want):
        raise SandboxUnavailable(f"EVOLVE_SANDBOX={want}: that mechanism does not work on this host")
    return want


_ISOLATION = {
    "bwrap": "bwrap(net,pid,ipc,ro-fs,tmp-home)+scrubbed-env",
    "unshare": "unshare(net,pid,mount,ro-fs,hidden-secrets)+scrubbed-env",
    "landlock": "landlock(fs{net})+scrubbed-env",
    "none": "none: scrubbed env only (no bwrap, no unshare, no landlock)",
}


def plan(cmd: list[str], *, scratch_dir: Path, read_only_paths: list[Path], gpu: int | None) -> SandboxPlan:
    """Wrap the worker command `cmd` and build its environment (see the module docstring)."""
    scratch = Path(scratch_dir).resolve()
    make_scratch(scratch)
    ro = [Path(p) for p in read_only_paths]
    mode = chosen_mode()
    env = scrubbed_env(scratch, gpu, mode)
    argv = _wrap(mode, list(cmd), scratch, ro, env)
    isolation = _ISOLATION[mode]
    if mode == "landlock":
        isolation = isolation.replace("{net}", ",net" if landlock_abi() >= 4 else "")
    return SandboxPlan(argv=argv, env=env, isolation=isolation, mode=mode)


# --------------------------------------------------------------------- Landlock (in-process)
_SYS_CREATE, _SYS_ADD, _SYS_RESTRICT = 444, 445, 446   # same numbers on x86_64 and aarch64
_PR_SET_NO_NEW_PRIVS = 38
_FS_WRITE_FILE, _FS_REMOVE_DIR, _FS_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_FS_MAKE = sum(1 << b for b in range(6, 13))           # char, dir, reg, sock, fifo, block, sym
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when Landlock is missing or disabled)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64", "arm64"):
        return 0
    try:
        r = ctypes.CDLL(None, use_errno=True).syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(int(r), 0)


def apply_in_process(scratch_dir: Path, profiler: bool = False) -> str | None:
    """Confine this process (Landlock) so it can write only under `scratch_dir` (+ device
    nodes) and, on ABI >= 4, make no TCP connections. Irreversible. Returns a description
    of what is in force, or None when Landlock is unavailable or EVOLVE_SANDBOX=none.
    ``profiler``: TCP and abstract UNIX sockets stay allowed (Nsight Compute's link to the
    child it profiles, evaluator/ncu.py; only in a network namespace of its own). Writes
    under /proc stay denied in every setting (``/proc/self/mem`` would let native code
    rewrite the process's memory), although a process that starts CUDA under this
    Landlock needs them (``cuInit`` names its threads in ``/proc/<pid>/task/<tid>/comm``;
    denied, it fails with error 304): CUDA is initialised before `apply_in_process`."""
    if os.environ.get("EVOLVE_SANDBOX", "auto").strip().lower() == "none":
        return None
    abi = landlock_abi()
    if abi < 1:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    fs = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE
    fs |= _FS_REFER if abi >= 2 else 0
    fs |= _FS_TRUNCATE if abi >= 3 else 0
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 and not profiler else 0
    scoped = ((0 if profiler else _SCOPE_ABSTRACT_UNIX) | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return None
    try:
        return _restrict(libc, ruleset, Path(scratch_dir).resolve(), abi, fs, net, scoped)
    except OSError:
        return None
    finally:
        os.close(ruleset)


def _restrict(libc: ctypes.CDLL, ruleset: int, scratch: Path, abi: int, fs: int, net: int,
              scoped: int) -> str | None:
    _allow(libc, ruleset, scratch, fs)
    file_rights = _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
    for dev in ["/dev/null", "/dev/zero", "/dev/full", *map(str, sorted(Path("/dev").glob("nvidia*")))]:
        if Path(dev).is_char_device():   # CUDA opens its device nodes read-write
            _allow(libc, ruleset, Path(dev), file_rights)
    for d in sorted(Path("/dev").glob("nvidia-caps*")):
        if d.is_dir():
            _allow(libc, ruleset, d, _FS_WRITE_FILE)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return None
    if libc.syscall(_SYS_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
        return None
    parts = ["fs"] + (["net"] if net else []) + (["scope"] if scoped else [])
    return f"landlock(abi{abi}:{','.join(parts)})"


def _allow(libc: ctypes.CDLL, ruleset: int, path: Path, access: int) -> None:
    fd = os.open(str(path), os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneath(access, fd)
        if libc.syscall(_SYS_ADD, ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_add_rule({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)
