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
it a job, and with overlap (`overlap=True`, GPU actors) a second one once the actor's
lane says the first waits for or holds the GPU gate (lane.py; the actor runs them on
two threads, `max_concurrency=2`); it polls the jobs' phases while they run and
replaces an actor that dies (RayActorError) or hangs (no result `timeout_s + grace_s`
after a job started, twice that for a pre-screened candidate): the actor's evaluator
processes are killed, then the actor (`ray.kill`), and its jobs are re-queued once
(first in the queue; a hung job's neighbour keeps its attempt count); a second loss
resolves a job with `JobResult(lost=...)`.

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
from dataclasses import dataclass, replace
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


@dataclass
class _Flight:
    """A job sent to the slot's actor."""
    job: EvalJob
    fut: Future
    ref: Any
    end: float  # monotonic deadline: later without a result, the actor is hung


class Slot(WorkerSlot):
    """One actor position: a driver-side thread, the live actor (replaced when lost), the
    jobs in flight on it (at most `ex.jobs_per_worker`)."""

    def __init__(self, ex: "RayExecutor", name: str):
        super().__init__(name, None, ex.on_change, ex.log_path)
        self.ex = ex
        self.actor: Any = None
        self.given_up: str | None = None
        self.host = ""
        self.node_id: str | None = None
        self.cpus = 1
        self.known: dict[int, tuple[int, int]] = {}  # the actor's descendants seen while busy
        self.flights: dict[str, _Flight] = {}
        self.max_jobs = ex.jobs_per_worker
        self.may_send = False  # the actor's lane said a next job may start (last poll)
        self.thread = threading.Thread(target=self._run, name=f"evolve-{name}", daemon=True)

    def _run(self) -> None:
        ex = self.ex
        try:
            while not ex.abandon.is_set():
                if self.actor is None and not self._start():
                    break
                if not self.flights or (self.may_send and len(self.flights) < ex.jobs_per_worker):
                    item = ex.queue.get(timeout=0 if self.flights else ex.poll_s)
                    if item is not None:
                        self._send(*item)
                        continue
                if self.flights:
                    self._tend()
                elif ex.queue.closed:
                    break
        except Exception as e:  # a bug or Ray itself broke: this slot stops, clearly
            self.log(f"{self.name} stopped: {type(e).__name__}: {e}")
            for fl in self.flights.values():
                fail(fl.fut, ExecutorError(f"the Ray executor broke: {e}"))
            self.flights = {}
            self._give_up(f"Ray worker {self.name} broke: {e}")
        finally:
            for fl in self.flights.values():  # abandoned
                fail(fl.fut, ExecutorError("the executor was shut down"))
            self.flights = {}
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
                    max_restarts=0, max_task_retries=0,
                    max_concurrency=ex.jobs_per_worker).remote(
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

    def _send(self, job: EvalJob, fut: Future) -> None:
        """Send a job to the actor (its first phase, compile, shows at once)."""
        ex = self.ex
        if not self.flights:
            self.known = {}
        limit = (job.timeout_s + ex.grace_s) * (2 if job.prescreen else 1)
        same_host = sum(1 for o in ex.slots if o.host and o.host == self.host)
        ref = self.actor.run.remote(job.to_dict(), compile_threads(self.cpus, same_host))
        self.flights[job.job_id] = _Flight(job, fut, ref, time.monotonic() + limit)
        self.may_send = False  # until the actor's lane says so
        self.sync({**self._phases, job.job_id: "compile"})

    def _tend(self) -> None:
        """Wait a little for a result; collect it; notice a hung actor; poll the phases."""
        ex = self.ex
        refs = [fl.ref for fl in self.flights.values()]
        ready = ex.ray.wait(refs, num_returns=1, timeout=ex.status_every_s)[0]
        if ex.abandon.is_set():
            return  # _run fails the flights and kills the actor and its processes
        for fl in list(self.flights.values()):
            if fl.ref in ready:
                return self._finish(fl)
        now = time.monotonic()
        for fl in self.flights.values():
            if now > fl.end:
                limit = (fl.job.timeout_s + ex.grace_s) * (2 if fl.job.prescreen else 1)
                return self._lose(f"Ray worker {self.name} hung: no result {limit:.0f} s "
                                  f"after job {fl.job.job_id} started", culprit=fl)
        self._poll()

    def _finish(self, fl: _Flight) -> None:
        ex = self.ex
        try:
            res = JobResult.from_dict(ex.ray.get(fl.ref))
        except ex.ray.exceptions.RayTaskError as e:  # the runner raised: an evaluator/runner bug
            res = JobResult.failed(fl.job, self.name, self.status.gpu,
                                   error=f"the runner raised on {self.name}: {why(e)}")
        except Exception as e:  # RayActorError (died, killed, node lost), lost objects, ...
            return self._lose(f"Ray worker {self.name} lost during job {fl.job.job_id}: "
                              f"{why(e)}")
        del self.flights[fl.job.job_id]
        res.worker, res.gpu = self.name, self.status.gpu
        self.count(done=1)
        self.sync({j: p for j, p in self._phases.items() if j in self.flights})
        if not fl.fut.done():
            fl.fut.set_result(res)
        if self.flights:
            self._poll()  # may the next job go now that this one is done?

    def _poll(self) -> None:
        """Ask the busy actor its jobs' phases, whether a next job may start, and its
        processes (a dying actor: the jobs' own refs say what happened)."""
        try:
            st = self.ex.ray.get(self.actor.status.options(concurrency_group=CONTROL_GROUP)
                                 .remote(self.ex.jobs_per_worker), timeout=self.ex.status_every_s)
        except Exception:
            return
        for p in st.get("procs") or []:
            self.known[int(p[0])] = (int(p[0]), int(p[1]))
        phases = {j: p for j, p in (st.get("phases") or {}).items() if j in self.flights}
        self.may_send = bool(st.get("may_start")) and set(phases) == set(self.flights)
        self.sync({**{j: "compile" for j in self.flights}, **phases})

    def _lose(self, reason: str, culprit: _Flight | None = None) -> None:
        """The actor died or hung: kill it (and its evaluator processes), re-queue its jobs
        once (a hung job's neighbour keeps its attempt count); a second loss resolves the
        job with `lost`."""
        self.log(reason)
        flights, self.flights = list(self.flights.values()), {}
        self._kill(children=True)
        self.count(restarts=1)
        self.set("dead")
        for fl in flights:
            job, fut = fl.job, fl.fut
            if fut.done():
                continue
            innocent = culprit is not None and fl is not culprit
            if job.attempt >= 1 and not innocent:
                fut.set_result(JobResult.failed(job, self.name, self.status.gpu,
                                                lost=f"{reason} (twice; re-queued once)"))
                continue
            try:
                self.ex.queue.requeue(job if innocent else replace(job, attempt=job.attempt + 1),
                                      fut)
            except ExecutorError as e:  # shut down meanwhile
                fail(fut, e)

    def _kill(self, children: bool) -> None:
        actor, known, ready = self.actor, list(self.known.values()), self.status.pid is not None
        self.actor, self.known, self.may_send = None, {}, False
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
                 max_start_failures: int = 3, loopback: bool | None = None, prestart: bool = True,
                 overlap: bool = True, jobs_per_worker: int | None = None):
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
        # jobs in flight on one actor: 2 with overlap on a GPU (lane.py), else 1
        self.jobs_per_worker = jobs_per_worker or (2 if overlap and self.gpu_workers else 1)
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
