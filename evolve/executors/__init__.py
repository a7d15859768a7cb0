"""Evaluation executors: where EvalJobs run (see evolve/executors/base.py).

    gpus = resolve_gpus(parse_gpus("0,1"))          # [0, 1]; None -> all visible / [None]
    ex = executor_for(run_config, workdir, log_dir)  # local, or ray (`pip install '.[ray]'`)
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from evolve.executors.base import EvalJob, Executor, ExecutorError, JobResult, WorkerStatus
from evolve.executors.ray_cluster import RAY_HINT

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "EvalJob", "Executor", "ExecutorError", "JobResult", "WorkerStatus",
           "executor_for", "parse_gpus", "resolve_gpus", "visible_gpus",
           "check_executor"]

_VISIBLE: list[int] | None = None


def parse_gpus(text: str | None) -> list[int] | None:
    """'0,1' -> [0, 1]; 'all' / '' / None -> None (all visible)."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ExecutorError(f"--gpus: {part!r} is not a GPU index (give e.g. 0,1 or all)")
        if int(part) in out:
            raise ExecutorError(f"--gpus: GPU {part} is listed twice")
        out.append(int(part))
    if not out:
        raise ExecutorError("--gpus: no GPU index given (give e.g. 0,1 or all)")
    return out


def visible_gpus() -> list[int]:
    """GPU indices visible here (CUDA_VISIBLE_DEVICES, else asked of a subprocess; no CUDA
    init in this process). [] without a GPU."""
    global _VISIBLE
    if _VISIBLE is not None:
        return _VISIBLE
    from evaluator import gpu_available

    if not gpu_available():
        _VISIBLE = []
        return _VISIBLE
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip() and all(p.strip().isdigit() for p in env.split(",")):
        _VISIBLE = [int(p) for p in env.split(",")]
        return _VISIBLE
    try:
        r = subprocess.run([sys.executable, "-I", "-c",
                            "import torch; print(torch.cuda.device_count())"],
                           capture_output=True, text=True, timeout=180)
        n = int(r.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        n = 1
    _VISIBLE = list(range(n))
    return _VISIBLE


def resolve_gpus(requested: list[int] | None) -> list[int | None]:
    """The workers' GPUs: the requested ones (each must be visible), all visible ones, or
    [None] (one interpreter worker) on a machine without a GPU."""
    visible = visible_gpus()
    if not visible:
        if requested:
            raise ExecutorError(f"--gpus {','.join(map(str, requested))}: no CUDA GPU is "
                                "visible here (without a GPU one interpreter worker runs; "
                                "leave --gpus out)")
        return [None]
    if requested is None:
        return list(visible)
    missing = [g for g in requested if g not in visible]
    if missing:
        raise ExecutorError(f"--gpus: GPU {','.join(map(str, missing))} is not visible here "
                            f"(visible: {','.join(map(str, visible))})")
    return list(requested)


def check_executor(name: str) -> None:
    """Fail early (ExecutorError) for an unknown executor or a missing Ray installation."""
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise ExecutorError(f"--executor ray needs Ray: {RAY_HINT}")


def executor_for(config: Any, workdir: Path, log_dir: Path) -> Executor:
    """A started executor for a run's configuration (RunConfig): one worker per GPU of
    --gpus (None = one interpreter worker). A Ray cluster (`ray_address`) counts its own
    GPUs ("auto" without --gpus): --gpus is not checked against this machine."""
    check_executor(config.executor)
    kw = dict(log_dir=log_dir, baseline_ttl_s=config.baseline_ttl_s,
              prestart=config.prestart_workers, overlap=config.overlap)
    if config.executor == "local":
        from evolve.executors.local import LocalExecutor
        return LocalExecutor(resolve_gpus(config.gpus), workdir, **kw)
    gpus: Any = resolve_gpus(config.gpus) if not config.ray_address else \
        config.gpus if config.gpus is not None else "auto"
    from evolve.executors.ray_executor import RayExecutor  # imports Ray when it connects
    return RayExecutor(config.ray_address, gpus, workdir, grace_s=config.worker_grace_s, **kw)
