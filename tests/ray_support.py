"""Helpers for tests/test_ray_executor.py: a job runner for the Ray actors (imported inside
the actors as `tests.ray_support:runner`; a local Ray instance's workers have the
checkout on PYTHONPATH) and a one-machine Ray cluster started with `ray start`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evolve.executors.base import EvalJob, JobResult


def runner(job: EvalJob, gpu, workdir: Path, on_stage=None, baseline_cache=None,
           worker: str = "", compile_threads=None, spares=None, lane=None) -> JobResult:
    """By job.source: "sleep:S" sleeps S seconds (half of it holding the lane's GPU
    gate, when given) with a child process in its own session (as the evaluator's are) whose pid it
    writes to workdir/<job_id>.a<attempt>.child; "die" kills its own process; "raise"
    raises; anything else is a real evaluation (evolve.jobs.run_job)."""
    src = job.source
    if src == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if src == "raise":
        raise RuntimeError("a runner bug")
    if not src.startswith("sleep:"):
        from evolve.jobs import run_job
        return run_job(job, gpu, workdir, on_stage=on_stage, baseline_cache=baseline_cache,
                       worker=worker, compile_threads=compile_threads, spares=spares, lane=lane)
    seconds = float(src.split(":", 1)[1])
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    (Path(workdir) / f"{job.job_id}.a{job.attempt}.child").write_text(str(child.pid))
    try:
        if on_stage:
            on_stage("import")
        time.sleep(seconds / 2)
        release = lane.acquire(job.job_id) if lane is not None else (lambda: None)
        gate = time.time()
        try:
            time.sleep(seconds / 2)
        finally:
            ungate = time.time()
            release()
    finally:
        child.kill()
        child.wait()
    return JobResult(job_id=job.job_id, kind=job.kind, worker=worker, gpu=gpu,
                     data={"status": "ok", "score": 1.0, "attempt": job.attempt,
                           "pid": os.getpid(), "gate": gate, "ungate": ungate})


def pid_alive(pid: int) -> bool:
    """A live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class LoopbackCluster:
    """`ray start --head --block` on 127.0.0.1 only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0),
    in its own session and temp dir, with token authentication (Ray's default for a new
    cluster; the token is ~/.ray/auth_token, made if missing); `stop()` ends exactly the
    processes it started. Join it from a fresh process with RAY_AUTH_MODE=token (Ray reads
    its auth mode once per process)."""

    def __init__(self, num_cpus: int = 1):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path(tempfile.mkdtemp(prefix="evray-c-", dir="/tmp"))
        ray_cli = Path(sys.executable).parent / "ray"
        subprocess.run([str(ray_cli), "get-auth-token", "--generate"], check=True,
                       capture_output=True, timeout=120)
        env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
                   RAY_USAGE_STATS_ENABLED="0")
        self.log = open(self.temp / "start.log", "wb")
        self.proc = subprocess.Popen(
            [str(ray_cli), "start", "--head", "--block", f"--port={self.port}",
             f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={self.temp}",
             "--object-store-memory=100000000"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_up(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {(self.temp / 'start.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                time.sleep(2.0)  # the raylet registers after the GCS listens
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the test Ray cluster did not come up")

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self._group_alive():
                time.sleep(0.2)
            if not self._group_alive():
                break
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        for _ in range(3):  # Ray's workers outside the group exit (and log) a moment later
            time.sleep(1.0)
            shutil.rmtree(self.temp, ignore_errors=True)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        # only zombies left counts as gone
        for e in os.listdir("/proc"):
            if e.isdigit():
                try:
                    with open(f"/proc/{e}/stat", encoding="utf-8") as f:
                        rest = f.read().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(rest[2]) == self.proc.pid and rest[0] != "Z":
                    return True
        return False


def drive_cluster(address: str, workdir: str, log_dir: str) -> dict:
    """(run in a fresh process) A RayExecutor on the cluster at `address`: one real
    evaluation of the seed; what the test checks."""
    from evolve.executors.base import EvalJob
    from evolve.executors.ray_executor import RayExecutor
    from evolve.paths import default_seed

    out: dict = {}
    ex = RayExecutor(address, None, workdir, log_dir=log_dir, loopback=True)
    try:
        out["shipped"], out["capacity"] = ex.conn.shipped, ex.capacity
        res = ex.submit(EvalJob("remote", "candidate", "gqa", "smoke",
                                default_seed("gqa").read_text())).result(timeout=600)
        out["result"] = res.to_dict()
        out["log"] = (Path(log_dir) / "workers-ray.log").read_text()
    finally:
        ex.shutdown()
    return out


if __name__ == "__main__":
    import json

    print("RESULT " + json.dumps(drive_cluster(*sys.argv[1:4])), flush=True)
