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
(sources as text) and JobResult dicts come back. One driver-side thread owns every Ray
call: it starts actors, hands the next queued job to a free actor (one in flight per
actor), waits on the results with `ray.wait`, polls busy actors' stage (compile/timing),
and replaces actors that die (RayActorError) or hang (no result `timeout_s + grace_s`
after the job started, twice that for a pre-screened candidate): the actor's evaluator
processes are killed, then the actor (`ray.kill`), and the job is re-queued once; a
second loss resolves it with `JobResult(lost=...)`.

Code on the nodes: a local instance's workers import this checkout (PYTHONPATH). On a
cluster (`address` given) the actors get this process's `evolve` and `evaluator`
packages as the job's runtime_env working_dir (`ship_code`, default on for a cluster;
see ray_cluster.ship_runtime_env), so the nodes run the orchestrator's code; each node
still needs the same Python environment (torch, triton, the project's dependencies and
the same Ray version), e.g. `bash install.sh ray` in a checkout. Work files live in the
run's scratch directory on the orchestrator's host and under the node's temp directory
elsewhere.
"""

from __future__ import annotations

import atexit
import collections
import socket
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from evolve.executors import ray_cluster
from evolve.executors.base import EvalJob, Executor, ExecutorError, JobResult, WorkerSlot
from evolve.executors.ray_actor import (CONCURRENCY_GROUPS, CONTROL_GROUP, EvalActor, reap,
                                        stop_actor)
from evolve.executors.procs import host_cpus
from evolve.executors.ray_cluster import ray_gpus, why
from evolve.records import utc_now


@dataclass
class Item:
    job: EvalJob
    future: "Future[JobResult]"


class Slot(WorkerSlot):
    """One actor position: the live actor (replaced when lost), its job in flight."""

    def __init__(self, name: str, gpu_actor: bool):
        super().__init__(name, None)
        self.name, self.gpu_actor = name, gpu_actor
        self.actor: Any = None
        self.ready_ref: Any = None
        self.started_at = 0.0
        self.failures = 0          # consecutive failed starts
        self.given_up: str | None = None
        self.item: Item | None = None
        self.job_ref: Any = None
        self.deadline = 0.0
        self.limit = 0.0
        self.status_ref: Any = None
        self.polled = 0.0
        self.host = ""
        self.node_id: str | None = None
        self.cpus = 1
        self.known: dict[int, tuple[int, int]] = {}  # the actor's descendants seen while busy


def set_exception(fut: Future, exc: BaseException) -> None:
    if fut.done():
        return
    try:
        if not fut.running():
            fut.set_running_or_notify_cancel()
        fut.set_exception(exc)
    except Exception:
        pass


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, gpus: Any = None, workdir: Path | str = ".",
                 *, n_workers: int | None = None, runner: Any = None, grace_s: float = 4200.0,
                 baseline_ttl_s: float = 600.0, start_timeout_s: float = 600.0,
                 ship_code: bool | None = None, cpus_per_worker: float = 1.0,
                 compile_threads: int | None = None, on_change: Callable[[], None] | None = None,
                 log_dir: Path | str | None = None, poll_s: float = 0.2,
                 status_every_s: float = 1.0, kill_wait_s: float = 5.0,
                 max_start_failures: int = 3, loopback: bool | None = None,
                 prestart: bool = True):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log_dir) / "workers-ray.log" if log_dir else None
        self.runner, self.grace_s, self.baseline_ttl_s = runner, grace_s, baseline_ttl_s
        self.start_timeout_s, self.cpus_per_worker = start_timeout_s, cpus_per_worker
        self.compile_threads, self.on_change = compile_threads, on_change
        self.poll_s, self.status_every_s, self.kill_wait_s = poll_s, status_every_s, kill_wait_s
        self.max_start_failures = max_start_failures
        self.prestart = prestart  # each actor keeps a pre-started evaluator worker (ray_actor)

        count, gpu_ids, mode = ray_gpus(gpus, n_workers)
        ship = address is not None if ship_code is None else ship_code
        self.conn = ray_cluster.connect(address, gpu_ids=gpu_ids, gpu_actors=mode != "cpu",
                                        num_cpus=self._local_cpus(count, mode), loopback=loopback,
                                        ship_code=bool(ship and address))
        try:
            if mode in ("all", "auto"):
                n = ray_cluster.cluster_gpus(self.conn)
                if n == 0 and mode == "all":
                    raise ExecutorError("--gpus all: the Ray cluster has no GPU")
                mode, count = ("gpu", n) if n else ("cpu", max(1, n_workers or 1))
            ray_cluster.check_resources(self.conn, count, mode == "gpu", cpus_per_worker)
            ray = self.conn.ray
            self._ray = ray
            self._actor_cls = ray.remote(concurrency_groups=CONCURRENCY_GROUPS)(EvalActor)
            self._reap = ray.remote(reap)
            self._exc = ray.exceptions
        except BaseException:
            ray_cluster.disconnect(self.conn)
            raise
        self.gpu_workers = mode == "gpu"
        self.host = socket.gethostname()
        self.slots = [Slot(f"ray-actor-{i}", self.gpu_workers) for i in range(count)]
        self._queue: collections.deque[Item] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._abandon = False
        self._thread = threading.Thread(target=self._loop, name="evolve-ray-executor", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().shutdown(wait=False))

    def _local_cpus(self, count: int, mode: str) -> int:
        need = int(count * self.cpus_per_worker + 0.999) if mode in ("cpu", "gpu") else 0
        return max(host_cpus(), need, 1)

    # --- the Executor interface -----------------------------------------------------

    def submit(self, job: EvalJob) -> "Future[JobResult]":
        fut: Future[JobResult] = Future()
        with self._lock:
            if self._closed:
                raise ExecutorError("the executor was shut down")
            dead = self._all_given_up()
            if dead is None:
                self._queue.append(Item(job, fut))
        if dead is not None:  # not the job's fault: the run cannot evaluate anything
            set_exception(fut, ExecutorError(dead))
        self._wake.set()
        return fut

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._closed and (wait or self._abandon):
                pending: list[Item] = []
            else:
                self._closed = True
                self._abandon = self._abandon or not wait
                pending = list(self._queue)
                self._queue.clear()
        for item in pending:
            if not item.future.cancel():
                set_exception(item.future, ExecutorError("the executor was shut down"))
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=None if wait else 60)

    # --- the dispatcher thread ------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed and (self._abandon or all(s.item is None for s in self.slots)):
                        break
                self._maintain()
                self._dispatch()
                self._wait()
                self._check_deadlines()
                self._poll_status()
        except Exception as e:  # a bug or Ray itself broke: fail what is left, clearly
            self._log(f"dispatcher stopped: {type(e).__name__}: {e}")
            with self._lock:
                self._closed = True
                items = list(self._queue) + [s.item for s in self.slots if s.item is not None]
                self._queue.clear()
            for item in items:
                set_exception(item.future, ExecutorError(f"the Ray executor broke: {e}"))
        finally:
            self._teardown()

    def _maintain(self) -> None:
        """Start an actor for every slot without one (unless it failed too often)."""
        now = time.monotonic()
        for s in self.slots:
            if s.actor is None and s.given_up is None and not self._closed:
                if now < s.started_at:  # back-off after a failed start
                    continue
                self._start(s)
            elif s.ready_ref is not None and now - s.started_at > self.start_timeout_s:
                self._start_failed(s, f"did not start within {self.start_timeout_s:.0f} s "
                                      "(no free GPU/CPU in the cluster, or a slow node?)")

    def _start(self, s: Slot) -> None:
        opts: dict[str, Any] = dict(num_cpus=self.cpus_per_worker,
                                    num_gpus=1 if s.gpu_actor else 0, max_restarts=0,
                                    max_task_retries=0, max_concurrency=1)
        s.started_at = time.monotonic()
        try:
            s.actor = self._actor_cls.options(**opts).remote(
                s.name, self.runner, str(self.workdir), self.host, self.baseline_ttl_s,
                s.gpu_actor, self.prestart)
            s.ready_ref = s.actor.ready.remote()
        except Exception as e:  # bad options, a runtime_env Ray refuses, ...
            self._start_failed(s, why(e))
            return
        self._set(s, "starting")

    def _dispatch(self) -> None:
        for s in self.slots:
            if s.actor is None or s.ready_ref is not None or s.item is not None:
                continue
            with self._lock:
                item = None
                while self._queue and item is None:
                    cand = self._queue.popleft()
                    if cand.job.attempt > 0 or cand.future.set_running_or_notify_cancel():
                        item = cand
            if item is None:
                return
            job = item.job
            threads = self.compile_threads or self._compile_threads(s)
            s.item, s.job_ref = item, s.actor.run.remote(job.to_dict(), threads)
            s.known = {}
            s.limit = (job.timeout_s + self.grace_s) * (2 if job.prescreen else 1)
            s.deadline = time.monotonic() + s.limit
            s.polled = time.monotonic()
            self._set(s, "busy", job.job_id)

    def _compile_threads(self, s: Slot) -> int | None:
        """Workers on one host share its CPUs for precompiling (as the local executor does)."""
        same = sum(1 for o in self.slots if o.host and o.host == s.host)
        return max(1, min(8, s.cpus // same)) if same > 1 else None

    def _wait(self) -> None:
        refs: dict[Any, tuple[Slot, Callable[[Slot, Any], None]]] = {}
        for s in self.slots:
            for ref, on in ((s.ready_ref, self._on_ready), (s.job_ref, self._on_job),
                            (s.status_ref, self._on_status)):
                if ref is not None:
                    refs[ref] = (s, on)
        if not refs:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            return
        ray = self._ray
        ready, rest = ray.wait(list(refs), num_returns=1, timeout=self.poll_s)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for ref in ready:
            s, on = refs[ref]
            on(s, ref)

    def _on_ready(self, s: Slot, ref: Any) -> None:
        if ref is not s.ready_ref:
            return
        try:
            info = self._ray.get(ref)
        except Exception as e:
            self._start_failed(s, why(e))
            return
        s.ready_ref, s.failures = None, 0
        s.host, s.cpus = str(info.get("host") or ""), int(info.get("cpus") or 1)
        s.node_id = info.get("node_id")
        s.count(pid=info.get("pid"), gpu=info.get("gpu"))
        self._log(f"{s.name} ready: pid {info.get('pid')} on {s.host}, gpu {info.get('gpu')} "
                  f"(CUDA_VISIBLE_DEVICES={info.get('cuda_visible_devices')}), "
                  f"code {info.get('evolve')}")
        self._set(s, "idle")

    def _on_job(self, s: Slot, ref: Any) -> None:
        if ref is not s.job_ref or s.item is None:
            return
        item = s.item
        try:
            data = self._ray.get(ref)
        except self._exc.RayTaskError as e:  # the runner raised: an evaluator/runner bug
            self._finish(s, JobResult.failed(item.job, s.name, s.status.gpu,
                                             error=f"the runner raised on {s.name}: {why(e)}"))
        except Exception as e:  # RayActorError (died, killed, node lost), lost objects, ...
            self._lose(s, f"Ray worker {s.name} lost during job {item.job.job_id}: {why(e)}")
        else:
            res = JobResult.from_dict(data)
            res.worker, res.gpu = s.name, s.status.gpu
            self._finish(s, res)

    def _on_status(self, s: Slot, ref: Any) -> None:
        if ref is not s.status_ref:
            return
        s.status_ref = None
        try:
            st = self._ray.get(ref)
        except Exception:
            return  # a dying actor: the job's own ref says what happened
        for p in st.get("procs") or []:
            s.known[int(p[0])] = (int(p[0]), int(p[1]))
        if s.item is not None and st.get("job_id") == s.item.job.job_id:
            self._set(s, st.get("group") or "busy", keep_job=True)

    def _poll_status(self) -> None:
        now = time.monotonic()
        for s in self.slots:
            if s.item is not None and s.status_ref is None and now - s.polled >= self.status_every_s:
                s.polled = now
                s.status_ref = s.actor.status.options(concurrency_group=CONTROL_GROUP).remote()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for s in self.slots:
            if s.item is not None and now > s.deadline:
                self._lose(s, f"Ray worker {s.name} hung: no result {s.limit:.0f} s after job "
                              f"{s.item.job.job_id} started")

    # --- outcomes -------------------------------------------------------------------

    def _finish(self, s: Slot, res: JobResult) -> None:
        item, s.item, s.job_ref, s.status_ref = s.item, None, None, None
        s.count(done=1)
        self._set(s, "idle")
        if item is not None and not item.future.done():
            item.future.set_result(res)

    def _lose(self, s: Slot, why: str) -> None:
        """The actor died or hung: kill it (and its evaluator processes), re-queue its job
        once; a second loss resolves the job with `lost`."""
        self._log(why)
        item = s.item
        self._kill(s, children=True)
        s.count(restarts=1)
        self._set(s, "dead")
        if item is None or item.future.done():
            return
        if self._closed:
            set_exception(item.future, ExecutorError("the executor was shut down"))
        elif item.job.attempt < 1:
            with self._lock:
                self._queue.appendleft(Item(replace(item.job, attempt=item.job.attempt + 1),
                                             item.future))
        else:
            item.future.set_result(JobResult.failed(item.job, s.name, s.status.gpu,
                                                    lost=f"{why} (twice; re-queued once)"))

    def _start_failed(self, s: Slot, why: str) -> None:
        s.failures += 1
        self._log(f"{s.name} failed to start ({s.failures}/{self.max_start_failures}): {why}")
        self._kill(s, children=False)
        s.started_at = time.monotonic() + min(30.0, 2.0 ** s.failures)  # back-off
        if s.failures >= self.max_start_failures:
            s.given_up = f"Ray worker {s.name} could not start: {why}"
            self._set(s, "dead")
            dead = self._all_given_up()
            if dead is not None:
                with self._lock:
                    items = list(self._queue)
                    self._queue.clear()
                for item in items:
                    set_exception(item.future, ExecutorError(dead))
        else:
            self._set(s, "starting")

    def _all_given_up(self) -> str | None:
        if self.slots and all(s.given_up for s in self.slots):
            return "no Ray worker could start: " + self.slots[0].given_up
        return None

    def _kill(self, s: Slot, children: bool) -> None:
        actor, known, ready = s.actor, list(s.known.values()), s.status.pid is not None
        s.actor = s.ready_ref = s.job_ref = s.status_ref = None
        s.item, s.known = None, {}
        s.count(pid=None)
        if actor is None:
            return
        method = "kill_children" if children else "close_spares" if ready and self.prestart else ""
        stop_actor(self._ray, actor, method, self.kill_wait_s, self._reap,
                   known if children else [], s.node_id)

    def _teardown(self) -> None:
        for s in self.slots:
            item = s.item
            self._kill(s, children=item is not None)
            if item is not None and not item.future.done():
                set_exception(item.future, ExecutorError("the executor was shut down"))
            self._set(s, "stopped")
        ray_cluster.disconnect(self.conn)

    # --- bookkeeping ----------------------------------------------------------------

    def _set(self, s: Slot, state: str, job_id: str | None = None, keep_job: bool = False) -> None:
        if s.set(state, job_id, keep_job) and self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                pass

    def _log(self, line: str) -> None:
        if self.log_path is None:
            return
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"{utc_now()} {line}\n")
        except OSError:
            pass
