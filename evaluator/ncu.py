"""Nsight Compute counters of one profiled shape (GPU, where ``ncu`` is installed).

A profile process of its own, after the worker and the checker are done and while the
evaluation still holds the GPU (runner.py):

1. The runner (trusted) copies the checked candidate and the worker's Triton cache into a
   fresh scratch directory and starts ``ncu <fixed options> python -I -c <child>
   request.json`` under the sandbox wrapper (bwrap or unshare: no network, secrets hidden,
   writes only to that scratch). ncu itself is not under Landlock.
2. The child (`evaluator.worker.ncu_child`) starts CUDA first, sends its own stdout and
   stderr to ``out/child.log``, then confines itself (Landlock) and arms the guard exactly as
   the worker does, imports the candidate and calls it on the shape: ``WARMUP`` calls, then
   one inside the NVTX range ``evolve``, the only range ncu profiles (``--nvtx-include``).
3. ncu prints its CSV (one row per kernel and metric) on its own stdout, which the child no
   longer holds; `parse` reads it and the result is validated like any other
   candidate-controlled record (profiling.py): display only, never scoring.

Why the order matters (H100 image, 2026-12-06): a process that *starts* CUDA under
Landlock fails (``cudaGetDeviceCount``: error 304) because ``cuInit`` names its threads in
``/proc/<pid>/task/<tid>/comm`` (tests/test_sandbox.py; NVIDIA/OpenShell#710), and allowing
/proc writes would let native candidate code rewrite its own process (``/proc/self/mem``).
So nothing is loosened: CUDA starts before the confinement, as in the worker.

Hardware counters need the driver's permission (``NVreg_RestrictProfilingToAdminUsers``);
when ncu cannot read them, the profile says so (``note``) and keeps its other numbers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
# the child keeps TCP and abstract UNIX sockets (Landlock ``profiler``) for ncu's link to
# it, so it must run in a network namespace of its own: only under these wrappers
SANDBOXES = ("bwrap", "unshare")


def find() -> str | None:
    """The ``ncu`` executable: on PATH, else under CUDA_HOME or /usr/local/cuda."""
    for cand in (shutil.which("ncu"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ncu"),
                 "/usr/local/cuda/bin/ncu"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.realpath(cand)
    return None


def command(ncu: str, request: Path, python: str = sys.executable) -> list[str]:
    """The profile process's command line: ncu with fixed options over the child."""
    return [ncu, "--csv", "--metrics", ",".join(METRICS), "--nvtx", "--nvtx-include", f"{RANGE}/",
            "--target-processes", "all", "--launch-count", "16", python, "-I", "-c",
            CHILD.format(root=str(REPO_ROOT)), str(request)]


def counters(ncu: str, *, candidate: Path, request: dict[str, Any], gpu: int | None,
             triton_cache: Path | None = None) -> tuple[list[dict[str, Any]], str]:
    """Profile ``candidate`` in a sandboxed process of its own (see the module docstring);
    ``request``: the child's target, timing, shape and input kind. Returns (kernel records,
    note); every failure is a note, never an exception."""
    from evaluator import sandbox, spawn

    scratch = Path(tempfile.mkdtemp(prefix="evolve-ncu-"))
    try:
        dirs = sandbox.make_scratch(scratch)
        cand = dirs["candidate"] / "kernel_0.py"
        shutil.copyfile(candidate, cand)
        if triton_cache is not None and triton_cache.is_dir():  # compiled by the worker
            shutil.copytree(triton_cache, dirs["triton_cache"], dirs_exist_ok=True)
        req = scratch / "request.json"
        req.write_text(json.dumps({**request, "scratch": str(scratch), "out_dir": str(dirs["out"]),
                                   "candidate": str(cand)}))
        try:
            plan = sandbox.plan(command(ncu, req), scratch_dir=scratch, gpu=gpu,
                                read_only_paths=[REPO_ROOT, Path(ncu).parent, Path(sys.prefix),
                                                 Path(sys.base_prefix)])
        except sandbox.SandboxUnavailable as exc:
            return [], f"Nsight Compute not run: {exc}"
        if plan.mode not in SANDBOXES:
            return [], ("Nsight Compute not run: it needs a network namespace of its own "
                        f"({' or '.join(SANDBOXES)} sandbox; this host has {plan.mode})")
        kernels, why = run(plan.argv, cwd=dirs["work"], env=plan.env)
        if why:
            child = spawn.tail(dirs["out"] / "child.log", 600).strip().splitlines()
            why += f" | child: {child[-1][:200]}" if child else ""
        return kernels, why
    except OSError as exc:
        return [], f"Nsight Compute not run: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    """Run ncu; (kernel records, note). A failure is a note, never an exception."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    except OSError as exc:
        return [], f"Nsight Compute could not start: {exc}"
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # ncu, its child and anything they started
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()
        return [], f"Nsight Compute: no answer within {TIMEOUT_S:.0f} s"
    kernels = parse(stdout)
    if kernels:
        return kernels, ""
    errors = [ln for ln in (stdout + "\n" + stderr).splitlines() if "==ERROR==" in ln
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
