"""Process plumbing of one evaluation: scratch layout, sandboxed worker, trusted checker.

Scratch layout (``EvalOptions.scratch_dir`` or a fresh temp dir)::

    work/          the worker's cwd
    home/          HOME
    triton_cache/  TRITON_CACHE_DIR
    tmp/           TMPDIR
    candidate/     the checked source, copied (the worker imports this copy, so the
                   bytes that passed the static check are the bytes that run)
    out/           raw outputs + report.json written by the worker

The checker's request lives in a separate private temp dir the worker never sees.
Both processes start with ``python -I`` (no cwd/PYTHONPATH/user site on sys.path), in
their own session (process group), and are killed as a group on timeout or exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_BOOT = "import sys; sys.path.insert(0, {root!r}); from evaluator.{mod} import main; main()"
_SECRET_MARKERS = ("_API_KEY", "_TOKEN", "_SECRET", "PASSWORD", "_CREDENTIALS")


@dataclass
class ProcResult:
    returncode: int | None
    timed_out: bool
    wall_s: float
    log_tail: str
    stdout: str = ""


@dataclass
class _FallbackPlan:
    argv: list[str]
    env: dict[str, str]
    isolation: str


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The calling environment minus secrets (``*_API_KEY``, tokens ...) and Python overrides."""
    env = {k: v for k, v in os.environ.items()
           if not any(m in k.upper() for m in _SECRET_MARKERS) and not k.startswith("PYTHON")}
    env.update(extra or {})
    return env


def make_scratch(base: Path) -> dict[str, Path]:
    dirs = {name: base / name for name in ("work", "home", "triton_cache", "tmp", "candidate", "out")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def boot_cmd(module: str, arg: Path) -> list[str]:
    return [sys.executable, "-I", "-c", _BOOT.format(root=str(ROOT), mod=module), str(arg)]


def worker_plan(request: dict[str, Any], dirs: dict[str, Path], scratch: Path, *,
                interpreter: bool, gpu: int | None):
    """Write the request and wrap the worker command with the sandbox; returns the plan."""
    req_path = scratch / "request.json"
    req_path.write_text(json.dumps(request))
    cmd = boot_cmd("worker", req_path)
    read_only = [ROOT, Path(sys.prefix), Path(sys.base_prefix)]
    try:
        from evaluator import sandbox
    except ImportError:  # H2's module not present: run unconfined and say so
        plan = _FallbackPlan(cmd, scrubbed_env(), "none (evaluator.sandbox unavailable)")
    else:
        plan = sandbox.plan(cmd, scratch_dir=scratch, read_only_paths=read_only, gpu=gpu)
    plan.env.update({
        "HOME": str(dirs["home"]), "TRITON_CACHE_DIR": str(dirs["triton_cache"]),
        "TMPDIR": str(dirs["tmp"]), "PYTHONDONTWRITEBYTECODE": "1",
    })
    if interpreter:
        plan.env["TRITON_INTERPRET"] = "1"
    else:
        plan.env.pop("TRITON_INTERPRET", None)
    if gpu is not None:
        plan.env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    for k in list(plan.env):
        if any(m in k.upper() for m in _SECRET_MARKERS):
            del plan.env[k]
    return plan


def run_group(argv: list[str], *, env: dict[str, str], cwd: Path, timeout_s: float,
              log_path: Path, capture_stdout: bool = False) -> ProcResult:
    """Run ``argv`` in its own session; SIGKILL the whole group on timeout and after exit."""
    t0 = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if capture_stdout else log, stderr=log,
                                start_new_session=True)
        timed_out = False
        out = b""
        try:
            if capture_stdout:
                out, _ = proc.communicate(timeout=timeout_s)
            else:
                proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)
            if timed_out:
                try:
                    out2, _ = proc.communicate(timeout=30)
                    out = out or out2 or b""
                except (subprocess.TimeoutExpired, ValueError):
                    pass
        rc = proc.poll()
    return ProcResult(rc, timed_out, time.monotonic() - t0, tail(log_path),
                      out.decode("utf-8", "replace") if out else "")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path, n_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_stage(log_text: str) -> str | None:
    stage = None
    for line in log_text.splitlines():
        if "[evaluator-worker] stage:" in line:
            stage = line.split("stage:", 1)[1].split()[0]
    return stage


def run_checker(checker_req: dict[str, Any], private: Path, *, gpu: int | None,
                timeout_s: float, log_path: Path) -> tuple[dict[str, Any] | None, ProcResult]:
    """Run the trusted checker; returns (verdict or None, process result)."""
    req_path = private / "checker_request.json"
    req_path.write_text(json.dumps(checker_req))
    env = scrubbed_env({"TRITON_CACHE_DIR": str(private / "triton_cache")})
    env.pop("TRITON_INTERPRET", None)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    res = run_group(boot_cmd("checker", req_path), env=env, cwd=private, timeout_s=timeout_s,
                    log_path=log_path, capture_stdout=True)
    for line in res.stdout.splitlines():
        if line.startswith("EVALUATOR-VERDICT "):
            try:
                return json.loads(line[len("EVALUATOR-VERDICT "):]), res
            except ValueError:
                break
    return None, res
