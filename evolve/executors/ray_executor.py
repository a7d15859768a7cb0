"""RayExecutor: evaluation workers as Ray actors, one per GPU, on one machine or a cluster.

    ex = RayExecutor(None, None, workdir)              # local Ray, one interpreter worker
    ex = RayExecutor(None, [0, 1], workdir)            # local Ray on GPUs 0 and 1
    ex = RayExecutor("10.0.0.5:6379", "all", workdir)  # a cluster: one actor per cluster GPU
    fut = ex.submit(job); res = fut.result()           # a JobResult

`gpus`: an int (that many GPU actors), a list of indices (a local instance uses exactly
those; on a cluster only their number counts), "all" (every GPU of the cluster), "auto"
("all" when the cluster has GPUs, else CPU actors) or None / 0 (`n_workers` CPU actors
for the Triton interpreter, default 1). A GPU actor holds `num_gpus=1`, so Ray never puts
two on one GPU and two timings never share a GPU; see ray_actor.py for the GPU index the
evaluation gets.

The orchestrator stays the single writer: jobs travel to the actors as EvalJob dicts
(sources as text) and JobResult dicts come back. As in the local executor, each slot is
a driver-side thread taking jobs from the shared `JobQueue`: it starts its actor, sends
it one job at a time, polls its stage (compile/timing) while it runs, and replaces an
actor that dies (RayActorError) or hangs (no result `timeout_s + grace_s` after the job
started, twice that for a pre-screened candidate): the actor's evaluator processes are
killed, then the actor (`ray.kill`), and the job is re-queued once (first in the queue);
a second loss resolves it with `JobResult(lost=...)`.

Code on the nodes: a local instance's workers import this checkout (PYTHONPATH). On a
cluster (`address` given) the actors get this process's `evolve` and `evaluator`
packages as the job's runtime_env working_dir (see ray_cluster.ship_runtime_env), so
the nodes run the orchestrator's code; each node still needs the same Python environment
(torch, triton, the project's dependencies and the same Ray version), e.g. `bash
install.sh ray` in a checkout. Work files live in the run's scratch directory on the
orchestrator's host and under the node's temp directory elsewhere.
"""

from __future__ import annotations

import atexit
import socket
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from evolve.executors import ray_cluster
from evolve.executors.base import (EvalJob, Executor, ExecutorError, JobQueue, JobResult,
                                   WorkerSlot, fail)
from evolve.executors.ray_actor import (CONCURRENCY_GROUPS, CONTROL_GROUP, EvalActor, reap,
                                        stop_actor)
from evolve.executors.procs import compile_threads, host_cpus
from evolve.executors.ray_cluster import ray_gpus, why


class _StartFailed(Exception):
    """An actor did not come up (the reason is the message)."""


class Slot(WorkerSlot):
    """One actor position: a driver-side thread, the live actor (replaced when lost)."""

    def __init__(self, ex: "RayExecutor", name: str):
        super().__init__(name, None, ex.on_change, ex.log_path)
        self.ex = ex
        self.actor: Any = None
        self.given_up: str | None = None
        self.host = ""
        self.node_id: str | None = None
        self.cpus = 1
        self.known: dict[int, tuple[int, int]] = {}  # the actor's descendants seen while busy
        self.thread = threading.Thread(target=self._run, name=f"evolve-{name}", daemon=True)

    def _run(self) -> None:
        ex, item = self.ex, None
        try:
            while not ex.abandon.is_set():
                if self.actor is None and not self._start():
                    break
                item = ex.queue.get(timeout=ex.poll_s)
                if item is None and ex.queue.closed:
                    break
                if item is not None:
                    self._job(*item)
                item = None
        except Exception as e:  # a bug or Ray itself broke: this slot stops, clearly
            self.log(f"{self.name} stopped: {type(e).__name__}: {e}")
            if item is not None:
                fail(item[1], ExecutorError(f"the Ray executor broke: {e}"))
            self._give_up(f"Ray worker {self.name} broke: {e}")
        finally:
            self._kill(children=ex.abandon.is_set())
            if self.given_up is None:
                self.set("stopped")

    def _wait(self, ref: Any, limit: float, stop: threading.Event) -> bool:
        """Whether `ref` is ready within `limit` seconds (False early once `stop` is set)."""
        end = time.monotonic() + limit
        while not stop.is_set() and (left := end - time.monotonic()) > 0:
            if self.ex.ray.wait([ref], timeout=min(left, self.ex.poll_s))[0]:
                return True
        return False

    def _start(self) -> bool:
        """Start this slot's actor, with back-off; False when shut down or given up."""
        ex = self.ex
        for failures in range(1, ex.max_start_failures + 1):
            self.set("starting")
            try:
                self.actor = ex.actor_cls.options(
                    num_cpus=ex.cpus_per_worker, num_gpus=1 if ex.gpu_workers else 0,
                    max_restarts=0, max_task_retries=0, max_concurrency=1).remote(
                    self.name, ex.runner, str(ex.workdir), ex.host, ex.baseline_ttl_s,
                    ex.gpu_workers, ex.prestart)
                ref = self.actor.ready.remote()
                if not self._wait(ref, ex.start_timeout_s, ex.closing):
                    if ex.closing.is_set():
                        return False
                    raise _StartFailed(f"did not start within {ex.start_timeout_s:.0f} s "
                                       "(no free GPU/CPU in the cluster, or a slow node?)")
                info = ex.ray.get(ref)
            except Exception as e:  # bad options, a runtime_env Ray refuses, a broken import
                reason = str(e) if isinstance(e, _StartFailed) else why(e)
                self.log(f"{self.name} failed to start ({failures}/{ex.max_start_failures}): "
                         f"{reason}")
                self._kill(children=False)
                if failures < ex.max_start_failures and ex.closing.wait(min(30.0, 2.0 ** failures)):
                    return False  # shut down during the back-off
                continue
            self.host, self.cpus = str(info.get("host") or ""), int(info.get("cpus") or 1)
            self.node_id = info.get("node_id")
            self.count(pid=info.get("pid"), gpu=info.get("gpu"))
            self.log(f"{self.name} ready: pid {info.get('pid')} on {self.host}, gpu "
                     f"{info.get('gpu')} (CUDA_VISIBLE_DEVICES={info.get('cuda_visible_devices')}"
                     f"), code {info.get('evolve')}")
            self.set("idle")
            return True
        self._give_up(f"Ray worker {self.name} could not start: {reason}")
        return False

    def _give_up(self, reason: str) -> None:
        self.given_up = reason
        self.set("dead")
        self.ex.slot_gave_up()

    def _job(self, job: EvalJob, fut: Future) -> None:
        ex = self.ex
        self.set("busy", job.job_id)
        self.known = {}
        limit = (job.timeout_s + ex.grace_s) * (2 if job.prescreen else 1)
        end = time.monotonic() + limit
        same_host = sum(1 for o in ex.slots if o.host and o.host == self.host)
        ref = self.actor.run.remote(job.to_dict(), compile_threads(self.cpus, same_host))
        while not self._wait(ref, ex.status_every_s, ex.abandon):
            if ex.abandon.is_set():
                fail(fut, ExecutorError("the executor was shut down"))
                return  # _run kills the actor and its evaluator processes
            if time.monotonic() > end:
                return self._lose(job, fut, f"Ray worker {self.name} hung: no result "
                                            f"{limit:.0f} s after job {job.job_id} started")
            self._poll(job)
        try:
            res = JobResult.from_dict(ex.ray.get(ref))
        except ex.ray.exceptions.RayTaskError as e:  # the runner raised: an evaluator/runner bug
            res = JobResult.failed(job, self.name, self.status.gpu,
                                   error=f"the runner raised on {self.name}: {why(e)}")
        except Exception as e:  # RayActorError (died, killed, node lost), lost objects, ...
            return self._lose(job, fut, f"Ray worker {self.name} lost during job "
                                        f"{job.job_id}: {why(e)}")
        res.worker, res.gpu = self.name, self.status.gpu
        self.count(done=1)
        self.set("idle")
        if not fut.done():
            fut.set_result(res)

    def _poll(self, job: EvalJob) -> None:
        """Ask the busy actor its stage group and its processes (a dying actor: the job's
        own ref says what happened)."""
        try:
            st = self.ex.ray.get(self.actor.status.options(concurrency_group=CONTROL_GROUP)
                                 .remote(), timeout=self.ex.status_every_s)
        except Exception:
            return
        for p in st.get("procs") or []:
            self.known[int(p[0])] = (int(p[0]), int(p[1]))
        if st.get("job_id") == job.job_id:
            self.set(st.get("group") or "busy", keep_job=True)

    def _lose(self, job: EvalJob, fut: Future, reason: str) -> None:
        """The actor died or hung: kill it (and its evaluator processes), re-queue its job
        once; a second loss resolves the job with `lost`."""
        self.log(reason)
        self._kill(children=True)
        self.count(restarts=1)
        self.set("dead")
        if fut.done():
            return
        if job.attempt >= 1:
            fut.set_result(JobResult.failed(job, self.name, self.status.gpu,
                                            lost=f"{reason} (twice; re-queued once)"))
            return
        try:
            self.ex.queue.requeue(replace(job, attempt=job.attempt + 1), fut)
        except ExecutorError as e:  # shut down meanwhile
            fail(fut, e)

    def _kill(self, children: bool) -> None:
        actor, known, ready = self.actor, list(self.known.values()), self.status.pid is not None
        self.actor, self.known = None, {}
        self.count(pid=None)
        if actor is None:
            return
        ex = self.ex
        method = "kill_children" if children else "close_spares" if ready and ex.prestart else ""
        stop_actor(ex.ray, actor, method, ex.kill_wait_s, ex.reap, known if children else [],
                   self.node_id)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, gpus: Any = None, workdir: Path | str = ".",
                 *, n_workers: int | None = None, runner: str | None = None,
                 grace_s: float = 4200.0, baseline_ttl_s: float = 600.0,
                 start_timeout_s: float = 600.0, cpus_per_worker: float = 1.0,
                 on_change: Callable[[], None] | None = None, log_dir: Path | str | None = None,
                 poll_s: float = 0.2, status_every_s: float = 1.0, kill_wait_s: float = 5.0,
                 max_start_failures: int = 3, loopback: bool | None = None, prestart: bool = True):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log_dir) / "workers-ray.log" if log_dir else None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.runner, self.grace_s, self.baseline_ttl_s = runner, grace_s, baseline_ttl_s
        self.start_timeout_s, self.cpus_per_worker = start_timeout_s, cpus_per_worker
        self.on_change = on_change
        self.poll_s, self.status_every_s, self.kill_wait_s = poll_s, status_every_s, kill_wait_s
        self.max_start_failures = max_start_failures
        self.prestart = prestart  # each actor keeps a pre-started evaluator worker (ray_actor)

        count, gpu_ids, mode = ray_gpus(gpus, n_workers)
        self.conn = ray_cluster.connect(address, gpu_ids=gpu_ids, gpu_actors=mode != "cpu",
                                        num_cpus=self._local_cpus(count, mode), loopback=loopback)
        try:
            if mode in ("all", "auto"):
                n = ray_cluster.cluster_gpus(self.conn)
                if n == 0 and mode == "all":
                    raise ExecutorError("--gpus all: the Ray cluster has no GPU")
                mode, count = ("gpu", n) if n else ("cpu", max(1, n_workers or 1))
            ray_cluster.check_resources(self.conn, count, mode == "gpu", cpus_per_worker)
            self.ray = self.conn.ray
            self.actor_cls = self.ray.remote(concurrency_groups=CONCURRENCY_GROUPS)(EvalActor)
            self.reap = self.ray.remote(reap)
        except BaseException:
            ray_cluster.disconnect(self.conn)
            raise
        self.gpu_workers = mode == "gpu"
        self.host = socket.gethostname()
        self.queue = JobQueue()
        self.closing = threading.Event()  # shutdown began: no new actor starts
        self.abandon = threading.Event()  # shutdown(wait=False): running jobs are dropped
        self.dead: str | None = None      # every slot gave up: why
        self._lock = threading.Lock()
        self._disconnected = False
        self.slots = [Slot(self, f"ray-actor-{i}") for i in range(count)]
        for s in self.slots:
            s.thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().shutdown(wait=False))

    def _local_cpus(self, count: int, mode: str) -> int:
        need = int(count * self.cpus_per_worker + 0.999) if mode in ("cpu", "gpu") else 0
        return max(host_cpus(), need, 1)

    def submit(self, job: EvalJob) -> "Future[JobResult]":
        if self.dead is None:
            return self.queue.submit(job)
        fut: Future[JobResult] = Future()  # not the job's fault: the run cannot evaluate
        fail(fut, ExecutorError(self.dead))
        return fut

    def slot_gave_up(self) -> None:
        """(a slot's thread) When no slot is left, fail what waits and what comes."""
        with self._lock:
            if self.dead is None and all(s.given_up for s in self.slots):
                self.dead = "no Ray worker could start: " + self.slots[0].given_up
                self.queue.close(self.dead)

    def shutdown(self, wait: bool = True) -> None:
        self.closing.set()
        if not wait:
            self.abandon.set()
        self.queue.close()
        for s in self.slots:
            if s.thread is not threading.current_thread():
                s.thread.join(timeout=None if wait else 60)
        with self._lock:
            done, self._disconnected = self._disconnected, True
        if not done:
            ray_cluster.disconnect(self.conn)
