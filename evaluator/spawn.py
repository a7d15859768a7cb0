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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evaluator import sandbox
from evaluator.progress import LogFollower, stage_of

_BOOT = "import sys; sys.path.insert(0, {root!r}); from evaluator.{mod} import main; main()"
BASELINE_ALLOWANCE_S = 1800.0


@dataclass
class ProcResult:
    returncode: int | None
    timed_out: bool
    log_tail: str
    stopped: Any  # the failure ``on_phase1`` returned, if any
    candidate_started: bool  # out/baselines.done was written: candidate code may have run


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The calling environment minus secrets (the sandbox's ``SECRET_ENV`` names: API keys,
    tokens ...) and Python overrides."""
    env = {k: v for k, v in os.environ.items()
           if not sandbox.SECRET_ENV.search(k) and not k.startswith("PYTHON")}
    env.update(extra or {})
    return env


def boot_cmd(module: str, arg: Path | str) -> list[str]:
    return [sys.executable, "-I", "-c", _BOOT.format(root=str(sandbox.REPO_ROOT), mod=module), str(arg)]


def worker_plan(request: dict[str, Any] | None, scratch: Path, *, interpreter: bool, gpu: int | None):
    """The worker command wrapped with the sandbox, with the worker's environment
    (sandbox.scrubbed_env: an allow-list without secrets, HOME, TMPDIR and the Triton cache
    in the scratch layout, CUDA_VISIBLE_DEVICES; here TRITON_INTERPRET on/off). ``request``
    is written to ``scratch/request.json`` for the worker; None: a pre-started worker that
    reads it from stdin (prestart.py)."""
    arg: Path | str = "-"
    if request is not None:
        arg = scratch / "request.json"
        arg.write_text(json.dumps(request))
    plan = sandbox.plan(boot_cmd("worker", arg), scratch_dir=scratch, gpu=gpu,
                        read_only_paths=[sandbox.REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix)])
    if interpreter:
        plan.env["TRITON_INTERPRET"] = "1"
    else:
        plan.env.pop("TRITON_INTERPRET", None)
    return plan


def drive_worker(proc: subprocess.Popen, *, timeout_s: float, log_path: Path, phase1: Path,
                 on_phase1, on_stage: Callable[[str], None] | None = None,
                 request: bytes | None = None, phase1_token: str | None = None,
                 on_gate: Callable[[], None] | None = None) -> ProcResult:
    """Drive a started worker (own session, stdin a pipe) through the GPU gate and the
    correctness handshake.

    The GPU gate (gate.py): when the worker has written ``out/compiled.json`` (carrying
    ``phase1_token`` when given) it blocks on stdin; ``on_gate()`` (the caller's wait for
    its GPU; None: none) runs, then the worker gets the line ``gpu``. The time spent in
    ``on_gate`` does not count against ``timeout_s``.

    ``request``: a pre-started worker's request line (prestart.py), written to its stdin
    first (by a thread: a worker still importing must not block this loop's deadline).

    ``timeout_s`` counts from the moment the worker has finished timing the baselines
    (trusted code, before the candidate is imported); the baselines get
    ``BASELINE_ALLOWANCE_S`` on top, and a worker stuck there is an evaluator problem.

    When the worker has written ``phase1`` (its correctness outputs are complete; with
    ``phase1_token``, only a file carrying that token counts: candidate code may create
    files in out/, it never sees the token) it blocks on stdin; ``on_phase1()`` (the trusted checker) runs meanwhile and returns
    None to release the worker into timing, or a failure to stop it. The time spent in
    ``on_phase1`` does not count against ``timeout_s``. The process group is SIGKILLed
    on timeout, on a failed phase 1, and after exit (stray children).

    ``on_stage`` receives the stages the worker announces in its log, as they appear
    (the loop follows the log; the worker announces ``awaiting-verdict`` before
    ``phase1`` exists, so it is reported before ``on_phase1`` runs).
    """
    deadline = time.monotonic() + timeout_s + BASELINE_ALLOWANCE_S
    started = False  # candidate part started (out/baselines.done written by trusted code)
    released = False
    gated = False
    stopped = None
    timed_out = False
    follower = LogFollower(log_path, on_stage) if on_stage is not None else None
    writer = None
    if request is not None:
        writer = threading.Thread(target=_send, args=(proc, request), daemon=True)
        writer.start()
    try:
        while proc.poll() is None:
            if follower is not None:
                follower.poll()
            if not started and (phase1.parent / "baselines.done").is_file():
                started = True
                deadline = time.monotonic() + timeout_s
            if not gated and _marked(phase1.parent / "compiled.json", "gate_token", phase1_token):
                pause = time.monotonic()
                if on_gate is not None:
                    on_gate()
                deadline += time.monotonic() - pause
                gated = True
                if writer is not None:
                    writer.join(timeout=30)  # done: the worker read the request first
                _send(proc, b"gpu\n")
            if not released and _marked(phase1, "phase1_token", phase1_token):
                if follower is not None:
                    follower.poll()
                pause = time.monotonic()
                stopped = on_phase1()
                deadline += time.monotonic() - pause
                released = True
                if stopped is not None:
                    break
                if writer is not None:
                    writer.join(timeout=30)  # done: the worker read the request first
                _send(proc, b"go\n", close=True)
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.05)
    finally:
        stop(proc)
        if writer is not None:
            writer.join(timeout=5)
    if follower is not None and stopped is None:
        follower.poll(final=True)
    return ProcResult(proc.returncode, timed_out, tail(log_path), stopped,
                      started or (phase1.parent / "baselines.done").is_file())


def _marked(path: Path, key: str, token: str | None) -> bool:
    """Whether the worker's own handshake file is there (carrying ``token`` at ``key``)."""
    if not path.is_file():
        return False
    if token is None:
        return True
    try:
        return json.loads(path.read_text()).get(key) == token
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        return False


def _send(proc: subprocess.Popen, data: bytes, close: bool = False) -> None:
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
        if close:
            proc.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


class CheckerSession:
    """The trusted checker, started early (it imports torch while the worker runs) and fed
    commands (``checks`` then ``samples``) on stdin; each answer is one verdict line. Its
    stderr goes to ``private/checker.log``."""

    def __init__(self, checker_req: dict[str, Any], private: Path, *, gpu: int | None):
        req_path = private / "checker_request.json"
        req_path.write_text(json.dumps(checker_req))
        env = scrubbed_env({"TRITON_CACHE_DIR": str(private / "triton_cache")})
        env.pop("TRITON_INTERPRET", None)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        with open(private / "checker.log", "ab") as log:  # the checker keeps its own descriptor
            self.proc = subprocess.Popen(boot_cmd("checker", req_path), env=env, cwd=str(private),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True)

    def ask(self, cmd: str, timeout_s: float) -> dict[str, Any] | None:
        """Send one command; the verdict dict, or None when the checker died or timed out."""
        import selectors

        try:
            self.proc.stdin.write((json.dumps({"cmd": cmd}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    return None
                text = line.decode("utf-8", "replace")
                if text.startswith("EVALUATOR-VERDICT "):
                    try:
                        return json.loads(text[len("EVALUATOR-VERDICT "):])
                    except ValueError:
                        return None
        finally:
            sel.close()
        return None

    def close(self) -> None:
        stop(self.proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (started in its own session), reap it and close
    its pipes."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    for pipe in (proc.stdin, proc.stdout):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
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
    stages = [s for s in map(stage_of, log_text.splitlines()) if s is not None]
    return stages[-1] if stages else None
