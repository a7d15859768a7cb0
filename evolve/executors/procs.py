"""Process-tree helpers for the local executor (Linux /proc; no extra dependencies).

A worker process's evaluations run in their own sessions (the evaluator's sandbox), so
killing the worker's process group is not enough: the executor remembers the worker's
descendants and kills them too. A pid is identified with its start time so that a
recycled pid is never killed by mistake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

Proc = tuple[int, int]  # (pid, start time in clock ticks)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time, state) of a live pid, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[1]), int(rest[19]), rest[0]
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[Proc]:
    """Every live descendant of pid, with its start time."""
    children: dict[int, list[Proc]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for e in entries:
        if not e.isdigit():
            continue
        st = _stat(int(e))
        if st is not None:
            children.setdefault(st[0], []).append((int(e), st[1]))
    out: list[Proc] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c[0])
    return out


def alive(p: Proc) -> bool:
    st = _stat(p[0])
    return st is not None and st[1] == p[1] and st[2] != "Z"


def kill_procs(procs: list[Proc]) -> None:
    """SIGKILL each still-live process (and the group it leads, if any)."""
    for p in procs:
        if not alive(p):
            continue
        for kill in (os.killpg, os.kill):
            try:
                kill(p[0], signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass


def stop_tree(proc: subprocess.Popen, known: list[Proc], term_wait_s: float = 5.0) -> None:
    """SIGTERM the worker (its evaluator cleans up its sandboxed processes), then SIGKILL
    the worker, its group and every descendant seen now or earlier."""
    tree = known + descendants(proc.pid)
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + term_wait_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    for kill in (os.killpg, os.kill):
        try:
            kill(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    kill_procs(tree)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
