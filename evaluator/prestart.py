"""Pre-started evaluation workers: the worker's interpreter start-up and ``import torch`` /
``import triton`` happen before the evaluation that uses it (e.g. while the previous
evaluation on the same GPU runs), instead of on its critical path.

    spare = Prestarted.start(gpu=0, interpreter=False)     # trusted caller (a job worker)
    evaluate(path, options=EvalOptions(gpu=0, prestarted=spare))  # consumes the handle

A handle owns a scratch directory (layout of spawn.py) and a private directory (its log,
later the checker's files) and one sandboxed worker started as ``worker_plan(None, ...)``
with the same sandbox and environment rules as a normal worker. That worker announces
``stage: init``, imports torch and triton -- no CUDA initialisation, nothing that touches
the GPU, where another evaluation may be timing -- and blocks reading ONE line from
stdin: the request (plan with the secret seed, paths). Until then the process holds no
candidate bytes and no seed, and the request never exists on disk. EOF before a request
-> the worker exits quietly with ``IDLE_EXIT``. Everything after the request, including
the ``go`` handshake on the same stdin, is the normal worker protocol (spawn.py).

Only under a sandbox with its own pid namespace (bwrap, unshare): elsewhere ``start``
raises ``PrestartUnsupported`` (see ``PID_ISOLATING``). One handle serves at most one
evaluation: ``evaluate``/``compare_candidates`` close it
afterwards whatever happened (``close`` kills the process group and removes both
directories). A handle whose process died, whose key (gpu, interpreter) does not match
the evaluation, or that comes with ``EvalOptions.scratch_dir`` is closed unused and the
evaluation spawns a fresh worker. (A worker that dies between that check and reading
its request is a worker death before the candidate: ``internal``, as for a fresh one.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

IDLE_EXIT = 5  # the worker's exit status when stdin closed before a request arrived


# Sandbox mechanisms that give the worker its own pid namespace. Without one, a running
# candidate could open the waiting spare's /proc/<pid>/fd/0 (same user) and read or forge
# the next evaluation's request, so pre-starting is refused there.
PID_ISOLATING = ("bwrap", "unshare")


class PrestartError(RuntimeError):
    """A pre-started worker could not be started (sandbox set-up, process start)."""


class PrestartUnsupported(PrestartError):
    """This host's sandbox does not isolate pids: workers are spawned per evaluation."""


@dataclass
class Prestarted:
    """One pre-started worker, its scratch and private directories (see module docstring)."""

    gpu: int | None
    interpreter: bool
    scratch: Path
    private: Path
    isolation: str
    proc: subprocess.Popen | None = None
    used: bool = False

    @property
    def log_path(self) -> Path:
        return self.private / "worker.log"

    @classmethod
    def start(cls, gpu: int | None, interpreter: bool, base: Path | None = None) -> "Prestarted":
        """Create the directories (scratch under ``base`` when given) and start the worker."""
        from evaluator import spawn

        if base is not None:
            Path(base).mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="evolve-spare-", dir=base))
        private = Path(tempfile.mkdtemp(prefix="evolve-check-"))  # never inside the sandbox
        try:
            sp = spawn.worker_plan(None, scratch, interpreter=interpreter, gpu=gpu)
            if sp.mode not in PID_ISOLATING:
                raise PrestartUnsupported(
                    f"pre-started workers need a pid-isolating sandbox ({' or '.join(PID_ISOLATING)});"
                    f" this host's is {sp.mode}: every evaluation spawns its own worker")
            h = cls(gpu, interpreter, scratch, private, sp.isolation)
            with open(h.log_path, "ab") as log:  # the worker keeps its own descriptor
                h.proc = subprocess.Popen(sp.argv, env=sp.env, cwd=str(scratch / "work"), stdin=subprocess.PIPE,
                                          stdout=log, stderr=log, start_new_session=True)
        except Exception as exc:  # noqa: BLE001 - sandbox or process start failed
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(private, ignore_errors=True)
            if isinstance(exc, PrestartUnsupported):
                raise
            raise PrestartError(f"cannot pre-start a worker: {exc}") from exc
        return h

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.used

    def usable(self, gpu: int | None, interpreter: bool) -> bool:
        """Live, unused and started for this GPU / interpreter setting."""
        return self.alive() and (self.gpu, self.interpreter) == (gpu, interpreter)

    def request_line(self, request: dict[str, Any]) -> bytes:
        """Mark the handle used and encode the request for the worker's stdin."""
        self.used = True
        return (json.dumps(request) + "\n").encode()

    def close(self) -> None:
        """Kill the process group, close the pipe, remove both directories."""
        from evaluator import spawn

        self.used = True
        if self.proc is not None:
            spawn.stop(self.proc)
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.private, ignore_errors=True)


def await_request(announce: Callable[[str], None]) -> dict[str, Any]:
    """Worker side: announce ``init``, import torch and triton (no CUDA init), block for the
    request line; exit quietly with ``IDLE_EXIT`` at EOF."""
    import os
    import time

    t0 = time.monotonic()
    announce("init")
    import torch  # noqa: F401 - imports only: another evaluation may be timing on this GPU
    import triton  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        sys.stderr.flush()
        os._exit(IDLE_EXIT)
    req = json.loads(line)  # written by the parent (Prestarted.request_line)
    print(f"[evaluator-worker] pre-started: request received (pid {os.getpid()}) "
          f"{time.monotonic() - t0:.1f} s after init", file=sys.stderr, flush=True)
    return req
