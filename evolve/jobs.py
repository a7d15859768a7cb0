"""Running one EvalJob on one GPU (trusted code, run by an executor's slot: a thread of the
orchestrator for the local executor, a Ray actor for Ray).

    result = run_job(job, gpu, workdir, on_stage=None, baseline_cache=None, lane=None)

`run_job` writes the job's source(s) under a fresh directory in `workdir`, calls
`evaluator.evaluate` (candidate, probe) or `evaluator.compare_candidates` (rematch) and
returns a `JobResult`: the result dict and the evaluation log text. `on_stage` hears each
stage the evaluator announces. `lane` (executors/lane.py): each evaluation's GPU part
waits for the GPU's gate (`acquire_gpu`), exclusive when it times baselines or is a
rematch. It never raises for the candidate's fault; an evaluator error (bad suite, ...)
comes back in `JobResult.error`. The directory it made is removed.

Baseline cache (one per worker, i.e. per GPU): the cuDNN times a worker measured for a
target's shapes are reused for `ttl_s` seconds through `EvalOptions.baseline_ms`, never
for rematches. Results that measured their
baselines (`baselines_cached` false) refresh the cache.

Pre-screen (`job.prescreen = {"suite": "quick", "champion_speedups": {shape: x},
"ratio": 0.9}`): the candidate is first evaluated on the quick suite; a rejection there
is its result; a quick geomean speedup below ratio x the champion's on the same shapes
is recorded rejected with the loop-level class `slow`; otherwise the full evaluation
follows and is the result.

Pre-started evaluator workers (`spares=SparePool(...)`, evaluator/prestart.py): each
candidate evaluation takes the pool's spare (Python + torch/triton already imported); the
next one is started when that evaluation reaches `confine` (its imports overlap the
compile stages, never the baseline timing) or, at the latest, when it ends. At most one
spare per slot (with overlap the second job in flight takes it, or spawns its own
worker); rematches do not use it.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from evaluator import (CompareResult, EvalOptions, EvalResult, Failure, Prestarted,
                       PrestartError, PrestartUnsupported, ProfileRequest, compare_candidates,
                       evaluate, geomean, get_target, gpu_available)
from evolve.executors.base import EvalJob, JobResult
from evolve.executors.lane import Lane

SLOW_CLASS = "slow"  # loop-level failure class: below the pre-screen bar (never the evaluator's)


class BaselineCache:
    """Per-GPU cache of baseline times: {target: {shape: {baseline: (ms, measured_at)}}}."""

    def __init__(self, ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self._data: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
        self._lock = threading.Lock()

    def lookup(self, target: str, shapes: list[str], names: list[str]) -> dict | None:
        """{shape: {baseline: ms}} when every shape has every baseline fresh, else None."""
        now = self.clock()
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            per = self._data.get(target, {})
            for s in shapes:
                hits = [per.get(s, {}).get(n) for n in names]
                if any(h is None or now - h[1] > self.ttl_s for h in hits):
                    return None
                out[s] = {n: h[0] for n, h in zip(names, hits)}
        return out or None

    def update(self, target: str, result: EvalResult) -> None:
        """Remember the baselines a result measured itself."""
        if result.baselines_cached or result.device not in ("cuda", "interpreter"):
            return
        now = self.clock()
        with self._lock:
            per = self._data.setdefault(target, {})
            for s in result.shapes:
                for n, ms in s.baselines.items():
                    if isinstance(ms, (int, float)) and math.isfinite(ms) and ms > 0:
                        per.setdefault(s.name, {})[n] = (float(ms), now)


class SparePool:
    """At most one pre-started evaluator worker for this process's next evaluation; its
    scratch lies under `base` (this pool's own directory, removed by `close`)."""

    def __init__(self, gpu: int | None, base: Path, log: Callable[[str], None] = print):
        self.gpu, self.base, self.log = gpu, Path(base), log
        self.spare: Any = None
        self.failures = 0
        self._lock = threading.Lock()

    def take(self) -> Any:
        """Hand over the spare (the evaluation that gets it consumes it, see `on_stage`)."""
        with self._lock:
            spare, self.spare = self.spare, None
        return spare

    def on_stage(self, stage: str) -> None:
        """Start the next spare when an evaluation reaches `confine` (after its baselines):
        the new spare's imports (CPU only) overlap that evaluation's compile stages."""
        if stage == "confine":
            self.refill()

    def refill(self) -> None:
        """Start a spare when there is none (best effort: after 3 failed starts, give up)."""
        with self._lock:
            if self.spare is not None or self.failures >= 3:
                return
            try:
                self.spare = Prestarted.start(self.gpu, not gpu_available(), base=self.base)
            except PrestartUnsupported as e:
                self.failures = 3  # not this host: no point retrying
                self.log(f"[spares] off: {e}")
            except PrestartError as e:
                self.failures += 1
                self.log(f"[spares] {e}")

    def close(self) -> None:
        with self._lock:
            spare, self.spare = self.spare, None
        if spare is not None:
            spare.close()
        shutil.rmtree(self.base, ignore_errors=True)


def _suite_shapes(target: str, suite: str) -> list[str]:
    try:
        return [s.name for s in get_target(target).suite(suite)]
    except Exception:  # an unknown suite: evaluate() says so
        return []


def prescreen_verdict(quick: EvalResult, prescreen: dict[str, Any]) -> str | None:
    """The `slow` message when the quick result is below the bar, else None."""
    champ = {k: float(v) for k, v in (prescreen.get("champion_speedups") or {}).items()
             if v is not None}
    mine = {s.name: s.speedup for s in quick.shapes}
    common = [n for n in mine if n in champ and mine[n]]
    if not common:
        return None
    ratio = float(prescreen.get("ratio", 0.9))
    q = geomean([float(mine[n]) for n in common])
    c = geomean([champ[n] for n in common])
    if q is None or c is None or q >= ratio * c:
        return None
    return f"quick pre-screen: {q:.2f} < {ratio:g} x champion {c:.2f}"


class _Runner:
    """One job's files, options and evaluator calls."""

    def __init__(self, job: EvalJob, gpu: int | None, root: Path,
                 on_stage: Callable[[str], None] | None, cache: BaselineCache | None,
                 compile_threads: int | None, spares: SparePool | None, lane: Lane | None):
        self.job, self.gpu, self.root, self.forward, self.cache = job, gpu, root, on_stage, cache
        self.compile_threads, self.spares, self.lane = compile_threads, spares, lane
        self.logs: list[str] = []
        self.n = 0

    def options(self, cached: dict | None = None, spare: Prestarted | None = None) -> EvalOptions:
        self.n += 1
        prof = ProfileRequest.from_dict(self.job.profile) if self.job.profile else None
        return EvalOptions(gpu=self.gpu, timeout_s=self.job.timeout_s,
                           scratch_dir=None if spare else self.root / f"scratch{self.n}",
                           prestarted=spare, log_path=self.root / f"eval{self.n}.log",
                           baselines=tuple(self.job.baselines) or None, baseline_ms=cached,
                           compile_threads=self.compile_threads, on_stage=self._on_stage,
                           profile=prof)

    def _on_stage(self, stage: str) -> None:
        if self.spares is not None:
            self.spares.on_stage(stage)
        if self.forward is not None:
            try:
                self.forward(stage)
            except Exception:  # a progress callback never breaks an evaluation
                pass

    def collect_log(self, title: str) -> None:
        path = self.root / f"eval{self.n}.log"
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            self.logs.append(f"==== {title} ====\n{text}" if self.n > 1 or title else text)

    def gate(self, exclusive: bool) -> Callable[[], Callable[[], None]] | None:
        """The evaluation's `acquire_gpu` (None without a lane): this GPU's gate, exclusive
        when the evaluation times baselines (see lane.py)."""
        lane, job_id = self.lane, self.job.job_id
        if lane is None:
            return None
        lane.back_to_compile(job_id)  # a second evaluation of the job compiles first
        return lambda: lane.acquire(job_id, exclusive)

    def source_file(self, name: str, text: str) -> Path:
        path = self.root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def evaluate(self, suite: str) -> EvalResult:
        job = self.job
        cached = None
        if self.cache is not None:
            cached = self.cache.lookup(job.target, _suite_shapes(job.target, suite),
                                       list(job.baselines))
        path = self.source_file("kernel.py", job.source)
        spare = self.spares.take() if self.spares is not None else None
        try:
            res = evaluate(path, target=job.target, suite=suite, options=self.options(cached, spare),
                           acquire_gpu=self.gate(exclusive=cached is None))
        finally:
            if spare is not None:
                spare.close()  # consumed by the evaluation; never reused
            self.collect_log(f"{job.job_id} suite {suite}")
        if self.spares is not None:
            self.spares.refill()  # no-op unless the evaluation stopped before `confine`
        if self.cache is not None and res.ok:
            self.cache.update(job.target, res)
        return res

    def candidate(self) -> EvalResult:
        pre = self.job.prescreen
        if not pre:
            return self.evaluate(self.job.suite)
        quick = self.evaluate(str(pre.get("suite", "quick")))
        if not quick.ok:
            return quick
        slow = prescreen_verdict(quick, pre)
        if slow is None:
            return self.evaluate(self.job.suite)
        quick.status, quick.score, quick.failure = "rejected", None, Failure(SLOW_CLASS, slow)
        return quick

    def rematch(self) -> CompareResult:
        job = self.job
        chal = self.source_file("challenger.py", job.source)
        champ = self.source_file("champion.py", job.champion_source or "")
        try:
            return compare_candidates(chal, champ, job.target, job.suite, self.options(),
                                      rounds=job.rounds, acquire_gpu=self.gate(exclusive=True))
        finally:
            self.collect_log("")


def run_job(job: EvalJob, gpu: int | None, workdir: Path,
            on_stage: Callable[[str], None] | None = None,
            baseline_cache: BaselineCache | None = None,
            worker: str = "", compile_threads: int | None = None,
            spares: SparePool | None = None, lane: Lane | None = None) -> JobResult:
    """Evaluate one job on `gpu` (None: the interpreter); see the module docstring.
    `compile_threads`: the evaluator's precompile threads (None: its default); a host
    with several workers shares its CPUs between them. `spares`: this worker's pool of
    pre-started evaluator workers (None: every evaluation spawns its own). `lane`: the
    GPU's lane (executors/lane.py; the caller begins and ends the job on it): each
    evaluation waits at its gate for the GPU (None: no gate)."""
    root = Path(workdir) / f"{job.job_id}.a{job.attempt}.{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=False)
    r = _Runner(job, gpu, root, on_stage, None if job.kind == "rematch" else baseline_cache,
                compile_threads, spares, lane)
    data: dict[str, Any] = {}
    error = None
    try:
        data = (r.rematch() if job.kind == "rematch" else r.candidate()).to_dict()
    except Exception as e:  # the evaluator refused the job (usage error) or broke
        error = f"{type(e).__name__}: {e}"[:2000]
        r.logs.append(traceback.format_exc()[-4000:])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return JobResult(job_id=job.job_id, kind=job.kind, worker=worker, gpu=gpu, data=data,
                     log="\n".join(r.logs), error=error)
