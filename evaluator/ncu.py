"""Nsight Compute counters of one profiled shape (GPU, where ``ncu`` is installed).

The flow, trusted parts first:

1. The runner (outside the sandbox) finds ``ncu`` (`find`) and names it in the plan's
   profile entry. The worker, before any candidate code exists in it, builds the exact
   command (`command`): ``ncu <fixed options> python -I -c <child> REQUEST``, the request
   (target, shape, candidate path; no secret seed) inside argv, and arms the guard with it.
2. After its own profile (CUDA events, torch.profiler), the worker starts that command
   (`run`) with a timeout. The guard allows exactly this argv, started with no candidate
   frame on the stack; any other process is denied as before.
3. The child runs inside the same sandbox (bwrap's namespaces and Landlock are inherited
   by every descendant) and confines itself and arms the guard exactly as the worker does
   (`Worker.import_candidates`), then calls the candidate on the shape: ``WARMUP`` calls
   (they compile, from the worker's Triton cache), then one call inside the NVTX range
   ``evolve``, the only range ncu profiles (``--nvtx-include``).
4. ncu's CSV (``--csv``: one row per kernel and metric) is parsed by `parse` in the
   worker; the parent validates the result like any candidate-controlled record
   (profiling.py): display only, never scoring; the timing stage is over by then.

Hardware counters need the driver's permission (``NVreg_RestrictProfilingToAdminUsers``);
when ncu cannot read them, the profile says so (``note``) and keeps its other numbers.

State (H100 image, 2026-12-06): outside the sandbox, and in a bare network or mount
namespace, ncu profiles a child fine; under the worker's Landlock the child's CUDA
initialisation fails (``cudaGetDeviceCount``: error 304), also with the TCP and
abstract-UNIX rules lifted. The cause: a new process's ``cuInit`` writes
``/proc/<pid>/task/<tid>/comm``, which Landlock denies (tests/test_sandbox.py;
NVIDIA/OpenShell#710), and allowing /proc writes would let native candidate code rewrite
the worker's memory (``/proc/self/mem``). The way out is a profile process of its own,
started by the runner under the sandbox wrapper (``ncu`` outside Landlock, the child
initialising CUDA before it confines itself, as the worker does), never a weaker worker.
Until then ``ProfileRequest.counters`` stays off by default; tests/test_profile_gpu.py
holds the expectation (strict xfail), and ``run.sh ncu-probe`` checks the ingredients.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

WARMUP = 2
TIMEOUT_S = 120.0
RANGE = "evolve"
# metric -> (label, unit shown); a metric unknown to the card fails the whole ncu call,
# so these are the ones every sm_90 part has
METRICS = {
    "gpu__time_duration.sum": ("time", "us"),
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": ("SM throughput", "%"),
    "sm__warps_active.avg.pct_of_peak_sustained_active": ("achieved occupancy", "%"),
    "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active": ("tensor pipe (wgmma)", "%"),
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active": ("tensor pipe (mma)", "%"),
    "dram__throughput.avg.pct_of_peak_sustained_elapsed": ("DRAM throughput", "%"),
    "launch__registers_per_thread": ("registers per thread", ""),
}
REPO_ROOT = Path(__file__).resolve().parents[1]
CHILD = "import sys; sys.path.insert(0, {root!r}); from evaluator.worker import ncu_child; ncu_child(sys.argv[1])"
# ncu's link to its child (TCP, abstract UNIX: sandbox.py ``profiler``) is allowed only
# when the profile runs ncu and the worker has its own network namespace
SANDBOXES = ("bwrap", "unshare")
MAX_REQUEST = 100_000  # characters of the child's request (one argv string; Linux allows 128 KiB)


def find() -> str | None:
    """The ``ncu`` executable: on PATH, else under CUDA_HOME or /usr/local/cuda."""
    for cand in (shutil.which("ncu"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ncu"),
                 "/usr/local/cuda/bin/ncu"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.realpath(cand)
    return None


def command(ncu: str, request: dict[str, Any], python: str = sys.executable) -> list[str] | None:
    """The one command the worker may start (the guard compares argv exactly); the child's
    request travels in argv, so nothing candidate code can write changes it. None: the
    request is too long for one argument."""
    text = json.dumps(request, separators=(",", ":"))
    if len(text) > MAX_REQUEST:
        return None
    return [ncu, "--csv", "--metrics", ",".join(METRICS), "--nvtx", "--nvtx-include", f"{RANGE}/",
            "--target-processes", "all", "--launch-count", "16", python, "-I", "-c",
            CHILD.format(root=str(REPO_ROOT)), text]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    """Run ncu; (kernel records, note). A failure is a note, never an exception."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [], f"Nsight Compute: no answer within {TIMEOUT_S:.0f} s"
    except OSError as exc:
        return [], f"Nsight Compute could not start: {exc}"
    kernels = parse(proc.stdout)
    if kernels:
        return kernels, ""
    errors = [ln for ln in (proc.stdout + "\n" + proc.stderr).splitlines() if "==ERROR==" in ln
              or "ERR_NVGPUCTRPERM" in ln or "Traceback" in ln or "Error" in ln]
    why = " | ".join(errors[-3:]) or f"exit {proc.returncode}, no kernel rows in its output"
    return [], f"Nsight Compute gave no counters: {why}"[:500]


def parse(text: str) -> list[dict[str, Any]]:
    """Kernel records from ncu's ``--csv`` output (other lines, e.g. ``==PROF==`` and the
    child's own, are skipped): ``{"name", "metrics": {metric: value}}`` in launch order;
    values converted to the units of `METRICS` (time in microseconds)."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    if not lines:
        return []
    kernels: dict[str, dict[str, Any]] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        metric = row.get("Metric Name")
        if metric not in METRICS or not row.get("ID"):
            continue
        try:
            value = float(str(row.get("Metric Value", "")).replace(",", ""))
        except ValueError:
            continue
        unit = str(row.get("Metric Unit", "")).strip().lower()
        if metric == "gpu__time_duration.sum":
            value *= {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3,
                      "ms": 1e3, "second": 1e6, "s": 1e6}.get(unit, 1.0)
        k = kernels.setdefault(row["ID"], {"name": str(row.get("Kernel Name", "?")), "metrics": {}})
        k["metrics"][metric] = value
    return list(kernels.values())
