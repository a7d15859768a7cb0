"""One local evaluation worker process (one per GPU), fed by `LocalExecutor`.

    python -m evolve.executors.worker_main --name local-gpu0 --gpu 0 --workdir DIR

Protocol (JSON lines): stdin carries `{"job": EvalJob dict}`, one job at a time;
stdout carries `{"event": "ready", "pid"}`, `{"event": "stage", "job_id", "stage",
"group"}` while a job runs, and `{"event": "result", "result": JobResult dict}`.
Everything else the process prints goes to stderr (the executor's worker log), so the
protocol stream stays clean. The worker exits at EOF on stdin, on SIGTERM (the
evaluator's own cleanup kills its sandboxed processes on the way out) and when its
parent (the orchestrator) dies. Unless `--no-prestart`, the worker keeps one pre-started
evaluator worker (evolve.jobs.SparePool) for its next evaluation and kills it on exit; a
spare orphaned by a SIGKILL exits by itself when its stdin closes.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable


def _load_runner(spec: str | None) -> Callable[..., Any]:
    if not spec:
        from evolve.jobs import run_job
        return run_job
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--gpu", default="none", help="GPU index, or 'none' for the interpreter")
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--runner", default=None, help="module:function with run_job's signature")
    ap.add_argument("--baseline-ttl", type=float, default=600.0)
    ap.add_argument("--compile-threads", type=int, default=None,
                    help="the evaluator's precompile threads (default: its own choice)")
    ap.add_argument("--no-prestart", action="store_true",
                    help="no pre-started evaluator worker (RunConfig.prestart_workers false)")
    args = ap.parse_args(argv)
    gpu = None if args.gpu in ("none", "") else int(args.gpu)

    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # stray prints (ours, the evaluator's) go to the log, not the protocol
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def emit(msg: dict[str, Any]) -> None:
        with lock:
            proto.write(json.dumps(msg, default=str) + "\n")
            proto.flush()

    signal.signal(signal.SIGTERM, _raise_interrupt)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    from evolve.executors.base import EvalJob, JobResult
    from evolve.jobs import BaselineCache, SparePool, stage_group

    runner = _load_runner(args.runner)
    cache = BaselineCache(args.baseline_ttl)
    args.workdir.mkdir(parents=True, exist_ok=True)
    params = inspect.signature(runner).parameters
    spares = None if args.no_prestart or "spares" not in params else \
        SparePool(gpu, args.workdir / f"spares-{args.name}")  # the executor removes it too
    emit({"event": "ready", "pid": os.getpid()})
    try:
        if spares is not None:
            spares.refill()  # the first job's evaluator worker imports while we wait
        for line in sys.stdin:
            if not line.strip():
                continue
            job = EvalJob.from_dict(json.loads(line)["job"])

            def on_stage(stage: str, _id: str = job.job_id) -> None:
                emit({"event": "stage", "job_id": _id, "stage": stage,
                      "group": stage_group(stage)})

            print(f"[worker {args.name}] job {job.job_id} (attempt {job.attempt})", flush=True)
            kw: dict[str, Any] = {"spares": spares} if spares is not None else {}
            if args.compile_threads and "compile_threads" in params:
                kw["compile_threads"] = args.compile_threads
            try:
                res = runner(job, gpu, args.workdir, on_stage=on_stage, baseline_cache=cache,
                             worker=args.name, **kw)
            except Exception as e:  # a runner bug: the job fails, the worker lives on
                traceback.print_exc()
                res = JobResult(job_id=job.job_id, kind=job.kind, worker=args.name, gpu=gpu,
                                data={}, error=f"{type(e).__name__}: {e}"[:2000],
                                log=traceback.format_exc()[-4000:])
            emit({"event": "result", "result": res.to_dict()})
    except KeyboardInterrupt:
        return 130
    finally:
        if spares is not None:  # normal exit, SIGTERM (also sent when the parent dies)
            spares.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
