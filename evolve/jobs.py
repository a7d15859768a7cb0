"""Running one EvalJob on one GPU (trusted code; executed inside an evaluation worker).

    result = run_job(job, gpu, workdir, on_stage=None, baseline_cache=None)   # JobResult

`run_job` writes the job's source(s) under a fresh directory in `workdir`, calls
`evaluator.evaluate` (candidate, probe) or `evaluator.compare_candidates` (rematch) and
returns a `JobResult`: the result dict, the evaluation log text, and seconds per stage
group ("compile": parent setup, import, precompile, correctness, checker; "timing":
worker init, baselines, timing). It never raises for the candidate's fault; an
evaluator error (bad suite, ...) comes back in `JobResult.error`. The directory it made
is removed.

Baseline cache (one per worker, i.e. per GPU): the cuDNN times a worker measured for a
target's shapes are reused for `ttl_s` seconds through `EvalOptions.baseline_ms` (when
the evaluator has that option), never for rematches. Results that measured their
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
spare per worker process; rematches do not use it.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from evolve.executors.base import EvalJob, JobResult

COMPILE_STAGES = ("setup", "confine", "import", "precompile", "correctness", "checker",
                  "awaiting-verdict")
TIMING_STAGES = ("init", "baselines", "timing")
SLOW_CLASS = "slow"  # loop-level failure class: below the pre-screen bar (never the evaluator's)


def stage_group(stage: str) -> str | None:
    """'compile' or 'timing' for a stage the evaluator announces (None for 'done')."""
    if stage in TIMING_STAGES:
        return "timing"
    if stage == "done":
        return None
    return "compile"


def _has_option(name: str) -> bool:
    from evaluator import EvalOptions
    return name in {f.name for f in dataclasses.fields(EvalOptions)}


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
                row = per.get(s, {})
                got = {}
                for n in names:
                    hit = row.get(n)
                    if hit is None or now - hit[1] > self.ttl_s:
                        return None
                    got[n] = hit[0]
                out[s] = got
        return out or None

    def update(self, target: str, result: dict[str, Any]) -> None:
        """Remember the baselines a result measured itself."""
        if result.get("baselines_cached") or result.get("device") not in ("cuda", "interpreter"):
            return
        now = self.clock()
        with self._lock:
            per = self._data.setdefault(target, {})
            for s in result.get("shapes") or []:
                for n, ms in (s.get("baselines") or {}).items():
                    if isinstance(ms, (int, float)) and math.isfinite(ms) and ms > 0:
                        per.setdefault(str(s.get("name")), {})[n] = (float(ms), now)


class SparePool:
    """At most one pre-started evaluator worker for this process's next evaluation; its
    scratch lies under `base` (this pool's own directory, removed by `close`)."""

    def __init__(self, gpu: int | None, base: Path):
        self.gpu, self.base = gpu, Path(base)
        self.spare: Any = None
        self.failures = 0
        self._lock = threading.Lock()

    def _interpreter(self) -> bool:
        from evaluator import gpu_available
        return not gpu_available()

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
        from evaluator.prestart import Prestarted, PrestartError, PrestartUnsupported
        with self._lock:
            if self.spare is not None or self.failures >= 3:
                return
            try:
                self.spare = Prestarted.start(self.gpu, self._interpreter(), base=self.base)
            except PrestartUnsupported as e:
                self.failures = 3  # not this host: no point retrying
                print(f"[spares] off: {e}", flush=True)
            except PrestartError as e:
                self.failures += 1
                print(f"[spares] {e}", flush=True)

    def close(self) -> None:
        with self._lock:
            spare, self.spare = self.spare, None
        if spare is not None:
            spare.close()
        shutil.rmtree(self.base, ignore_errors=True)


class _StageClock:
    """Seconds per stage group from the evaluator's stage announcements."""

    def __init__(self, forward: Callable[[str], None] | None):
        self.forward = forward
        self.seconds: dict[str, float] = {"compile": 0.0, "timing": 0.0}
        self.group: str | None = "compile"
        self.since = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, stage: str) -> None:
        with self._lock:
            now = time.monotonic()
            if self.group is not None:
                self.seconds[self.group] += now - self.since
            self.group, self.since = stage_group(stage), now
        if self.forward is not None:
            try:
                self.forward(stage)
            except Exception:  # a progress callback never breaks an evaluation
                pass

    def close(self) -> dict[str, float]:
        self("done")
        return {k: round(v, 3) for k, v in self.seconds.items()}


def _suite_shapes(target: str, suite: str) -> list[str]:
    from evaluator import get_target
    try:
        return [s.name for s in get_target(target).suite(suite)]
    except Exception:
        return []


def _geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def prescreen_verdict(quick: dict[str, Any], prescreen: dict[str, Any]) -> str | None:
    """The `slow` message when the quick result is below the bar, else None."""
    champ = {k: float(v) for k, v in (prescreen.get("champion_speedups") or {}).items()
             if v is not None}
    mine = {s.get("name"): s.get("speedup") for s in quick.get("shapes") or []}
    common = [n for n in mine if n in champ and mine[n]]
    if not common:
        return None
    ratio = float(prescreen.get("ratio", 0.9))
    q = _geomean([float(mine[n]) for n in common])
    c = _geomean([champ[n] for n in common])
    if q is None or c is None or q >= ratio * c:
        return None
    return f"quick pre-screen: {q:.2f} < {ratio:g} x champion {c:.2f}"


class _Runner:
    """One job's files, options and evaluator calls."""

    def __init__(self, job: EvalJob, gpu: int | None, root: Path, stages: _StageClock,
                 cache: BaselineCache | None, compile_threads: int | None = None,
                 spares: SparePool | None = None):
        self.job, self.gpu, self.root, self.stages, self.cache = job, gpu, root, stages, cache
        self.compile_threads, self.spares = compile_threads, spares
        self.logs: list[str] = []
        self.n = 0

    def options(self, cached: dict | None = None, spare: Any = None) -> Any:
        from evaluator import EvalOptions
        self.n += 1
        kw: dict[str, Any] = dict(gpu=self.gpu, scratch_dir=self.root / f"scratch{self.n}",
                                  log_path=self.root / f"eval{self.n}.log",
                                  timeout_s=self.job.timeout_s,
                                  baselines=tuple(self.job.baselines) or None)
        if spare is not None:  # it brings its own scratch dir (under the executor's workdir)
            kw.update(scratch_dir=None, prestarted=spare)
        if _has_option("on_stage"):
            kw["on_stage"] = self.stages
            if self.spares is not None:
                kw["on_stage"] = self._on_stage
        if cached and _has_option("baseline_ms"):
            kw["baseline_ms"] = cached
        if self.compile_threads is not None and _has_option("compile_threads"):
            kw["compile_threads"] = self.compile_threads
        return EvalOptions(**kw)

    def _on_stage(self, stage: str) -> None:
        try:
            self.spares.on_stage(stage)
        finally:
            self.stages(stage)

    def collect_log(self, title: str) -> None:
        path = self.root / f"eval{self.n}.log"
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            self.logs.append(f"==== {title} ====\n{text}" if self.n > 1 or title else text)

    def source_file(self, name: str, text: str) -> Path:
        path = self.root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def evaluate(self, suite: str) -> dict[str, Any]:
        from evaluator import evaluate
        job = self.job
        cached = None
        if self.cache is not None:
            cached = self.cache.lookup(job.target, _suite_shapes(job.target, suite),
                                       list(job.baselines))
        path = self.source_file("kernel.py", job.source)
        spare = self.spares.take() if self.spares is not None else None
        try:
            res = evaluate(path, target=job.target, suite=suite, options=self.options(cached, spare))
        finally:
            if spare is not None:
                spare.close()  # consumed by the evaluation; never reused
            self.collect_log(f"{job.job_id} suite {suite}")
        if self.spares is not None:
            self.spares.refill()  # no-op unless the evaluation stopped before `confine`
        data = res.to_dict()
        if self.cache is not None and data.get("status") == "ok":
            self.cache.update(job.target, data)
        return data

    def candidate(self) -> dict[str, Any]:
        pre = self.job.prescreen
        if not pre:
            return self.evaluate(self.job.suite)
        quick = self.evaluate(str(pre.get("suite", "quick")))
        if quick.get("status") != "ok":
            return quick
        slow = prescreen_verdict(quick, pre)
        if slow is not None:
            return {**quick, "status": "rejected", "score": None,
                    "failure": {"class": SLOW_CLASS, "message": slow, "shape": None}}
        return self.evaluate(self.job.suite)

    def rematch(self) -> dict[str, Any]:
        from evaluator import compare_candidates
        job = self.job
        chal = self.source_file("challenger.py", job.source)
        champ = self.source_file("champion.py", job.champion_source or "")
        try:
            res = compare_candidates(chal, champ, job.target, job.suite, self.options(),
                                     rounds=job.rounds)
        finally:
            self.collect_log("")
        if hasattr(res, "to_dict"):
            return res.to_dict()
        return {k: getattr(res, k, None) for k in ("challenger_score", "champion_score", "ratio",
                                                   "noise", "better", "per_round", "failure")}


def run_job(job: EvalJob, gpu: int | None, workdir: Path,
            on_stage: Callable[[str], None] | None = None,
            baseline_cache: BaselineCache | None = None,
            worker: str = "", compile_threads: int | None = None,
            spares: SparePool | None = None) -> JobResult:
    """Evaluate one job on `gpu` (None: the interpreter); see the module docstring.
    `compile_threads`: the evaluator's precompile threads (None: its default); a host
    with several workers shares its CPUs between them. `spares`: this worker's pool of
    pre-started evaluator workers (None: every evaluation spawns its own)."""
    t0 = time.monotonic()
    root = Path(workdir) / f"{job.job_id}.a{job.attempt}.{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=False)
    stages = _StageClock(on_stage)
    r = _Runner(job, gpu, root, stages, None if job.kind == "rematch" else baseline_cache,
                compile_threads, spares)
    data: dict[str, Any] = {}
    error = None
    try:
        data = r.rematch() if job.kind == "rematch" else r.candidate()
    except Exception as e:  # the evaluator refused the job (usage error) or broke
        error = f"{type(e).__name__}: {e}"[:2000]
        r.logs.append(traceback.format_exc()[-4000:])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return JobResult(job_id=job.job_id, kind=job.kind, worker=worker, gpu=gpu, data=data,
                     log="\n".join(r.logs), seconds=round(time.monotonic() - t0, 3),
                     stages=stages.close(), error=error)
