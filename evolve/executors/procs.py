"""Process-tree helpers for the executors (Linux /proc; no extra dependencies).

The evaluator runs each evaluation in its own session (the sandbox), so killing a process
group is not enough to abandon a job: an executor finds the descendants of the process
that ran it (this one, or a Ray actor) and kills them. A pid is identified with its start
time so that a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import os
import signal

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
    for e in os.listdir("/proc"):
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


def pid_alive(pid: int) -> bool:
    """A live process (a zombie, killed but not reaped, is not)."""
    st = _stat(pid)
    return st is not None and st[2] != "Z"


def alive(p: Proc) -> bool:
    """The same process (pid and start time) still lives."""
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


def host_cpus() -> int:
    """CPUs this process may use (the executors share them between their slots)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def compile_threads(cpus: int, workers: int) -> int | None:
    """The evaluator's precompile threads for one of `workers` sharing `cpus` (None: one
    worker, the evaluator's default)."""
    return max(1, min(8, cpus // workers)) if workers > 1 else None
