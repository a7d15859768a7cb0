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


def compile_threads(cpus: int, workers: int, compiling: int = 1) -> int | None:
    """The evaluator's precompile threads for one of `workers` sharing `cpus`, with up to
    `compiling` of that worker's jobs compiling at once (None: one worker, one compile at a
    time, the evaluator's default). Concurrent compiles share the worker's CPUs less two
    (the timing worker's thread and the orchestrator)."""
    if workers == 1 and compiling == 1:
        return None
    if compiling == 1:
        return max(1, min(8, cpus // workers))
    return max(1, min(8, (cpus // workers - 2) // compiling))


DEEP_OVERLAP_CPUS = 16  # CPUs per GPU from which two jobs compile while a third times


def overlap_depth(cpus: int, gpus: int) -> int:
    """Jobs in flight per GPU with overlap on: 2 (the next compiles while one times), or 3
    (two compile) where each GPU has DEEP_OVERLAP_CPUS CPUs or more. A candidate compiles
    twice (the quick pre-screen, then the full suite), so with one job compiling beside
    the timed one the GPU still waits whenever both in flight compile: H100, 16 CPUs, a
    20-minute run from seeds/gqa_gluon.py waited 254 s of 1230 s for compiles."""
    return 3 if cpus // max(1, gpus) >= DEEP_OVERLAP_CPUS else 2
