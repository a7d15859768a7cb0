"""Overlap of compile and timing (issue #19): the evaluator's GPU gate (a real worker on
the CPU interpreter), the per-GPU lane (evolve/executors/lane.py), two jobs on one local
slot, the --overlap flag in run.toml, the per-worker seconds in `evolve status`."""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import pytest

from evaluator import EvalOptions, evaluate
from evolve.executors import EvalJob
from evolve.executors.base import JobResult
from evolve.executors.base import WorkerSlot
from evolve.executors.lane import Lane
from evolve.executors.local import LocalExecutor
from tests.scaleout_support import sleepy_runner

ROOT = Path(__file__).resolve().parent.parent
NAIVE = ROOT / "seeds" / "gqa_naive.py"


def _stages(log: Path) -> list[str]:
    return [ln.split("stage: ", 1)[1].split()[0] for ln in log.read_text().splitlines()
            if "[evaluator-worker] stage: " in ln]


class _Gate:
    """An `acquire_gpu` that records when it was asked, holds the caller `hold_s` seconds,
    and when the release came."""

    def __init__(self, hold_s: float = 0.0):
        self.hold_s, self.asked, self.released = hold_s, [], []

    def __call__(self):
        self.asked.append(time.monotonic())
        time.sleep(self.hold_s)
        return lambda: self.released.append(time.monotonic())


# ------------------------------------------------------------------ the evaluator's gate

@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """A first evaluation (its gate before the baselines) and its baseline times."""
    log = tmp_path_factory.mktemp("first") / "a.log"
    first = evaluate(NAIVE, "gqa", "smoke", EvalOptions(log_path=log))
    assert first.ok, first.failure
    return log, {s.name: dict(s.baselines) for s in first.shapes}


def test_the_worker_waits_at_its_gate_and_the_wait_is_not_its_time(tmp_path, baselines):
    """Cached baselines: the gate comes after import and precompile, before correctness;
    held longer than the candidate's timeout, the evaluation still succeeds; the gate is
    given back once, after the worker is gone."""
    first_log, cached = baselines
    gate = _Gate(hold_s=6.0)
    t0 = time.monotonic()
    res = evaluate(NAIVE, "gqa", "smoke", EvalOptions(log_path=tmp_path / "b.log", timeout_s=4.0,
                                                      baseline_ms=cached), acquire_gpu=gate)
    assert res.ok and res.baselines_cached, (res.failure, res.log_tail)
    stages = _stages(tmp_path / "b.log")
    assert stages.index("precompile") < stages.index("awaiting-gpu") < stages.index("correctness")
    assert len(gate.asked) == len(gate.released) == 1
    assert gate.asked[0] - t0 < 30 and gate.released[0] >= gate.asked[0] + 6.0
    # without cached baselines the gate comes first: baseline timing is GPU work
    assert _stages(first_log)[:3] == ["init", "awaiting-gpu", "baselines"]


HANGS = '''
import time

import torch


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    time.sleep(600)
'''


@pytest.mark.parametrize("kind", ["dies", "hangs"])
def test_the_gate_is_given_back_when_the_worker_dies_or_times_out(tmp_path, baselines, kind):
    cand = tmp_path / f"{kind}.py"
    cand.write_text((ROOT / "tests" / "candidates" / "aborts.py").read_text() if kind == "dies"
                    else HANGS)
    gate = _Gate()
    res = evaluate(cand, "gqa", "smoke", EvalOptions(static_check=False, timeout_s=5,
                                                     baseline_ms=baselines[1]), acquire_gpu=gate)
    assert res.status == "rejected" and len(gate.asked) == len(gate.released) == 1
    if kind == "hangs":
        assert res.failure.cls == "timeout" and "correctness" in res.failure.message


def test_a_candidate_that_removes_the_launch_refuser_is_forbidden(tmp_path, baselines):
    """Before the gate every Triton launch is refused (gate.LaunchRefuser in Triton's
    launch_enter_hook chain); a candidate that takes the refuser out at import time is
    caught at the gate, before it gets the GPU."""
    cand = tmp_path / "unrefuse.py"
    cand.write_text(NAIVE.read_text() + "\nimport triton as _t\n"
                    "_t.knobs.runtime.launch_enter_hook.calls.clear()\n")
    gate = _Gate()
    res = evaluate(cand, "gqa", "smoke", EvalOptions(static_check=False, baseline_ms=baselines[1]),
                   acquire_gpu=gate)
    assert res.status == "rejected" and res.failure.cls == "forbidden", res.failure
    assert "launch refuser was removed before the GPU gate" in res.failure.message
    assert gate.asked == []  # stopped before it asked for the GPU


def test_the_refuser_refuses_launches_until_it_is_lifted():
    pytest.importorskip("triton")
    from evaluator import gate
    from evaluator.precompile import _runtime_knobs

    chain = _runtime_knobs().launch_enter_hook
    ref = gate.install()
    try:
        with pytest.raises(gate.LaunchRefused, match="before the evaluator's GPU gate"):
            chain({"name": "kernel"})  # what Triton's launcher calls before each launch
        assert ref.refused == 1
        assert gate.lift(ref) is None and ref not in chain.calls
        chain({"name": "kernel"})  # lifted: launches go through
        ref = gate.install()
        chain.calls.remove(ref)
        assert "removed" in gate.lift(ref)
    finally:
        if ref in chain.calls:
            chain.calls.remove(ref)


# ------------------------------------------------------------------ the lane

def test_the_lane_lets_one_job_at_a_time_hold_the_gate():
    lane, inside, spans = Lane(), [], []

    def job(name: str) -> None:
        lane.begin(name, reserved=False)
        release = lane.acquire(name)
        inside.append(name)
        assert len(inside) == 1
        t = time.monotonic()
        time.sleep(0.05)
        inside.remove(name)
        spans.append((t, time.monotonic()))
        release()
        release()  # idempotent
        lane.end(name)

    threads = [threading.Thread(target=job, args=(f"j{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    spans.sort()
    assert len(spans) == 4 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert lane.holder is None and not lane.phases


def test_a_second_job_starts_only_when_the_first_waits_for_or_holds_the_gate():
    lane = Lane()
    assert lane.may_start(2)
    lane.begin("a", reserved=False)
    assert not lane.may_start(2)  # a compiles: the next waits (one CPU part at a time)
    release = lane.acquire("a")
    assert lane.may_start(2) and not lane.may_start(1)  # a times: b may compile (overlap on)
    lane.begin("b", reserved=False)
    assert not lane.may_start(2)
    release()
    lane.end("a")
    lane.end("b")
    assert lane.may_start(1)
    lane.end("ghost")  # unknown: nothing happens


def test_with_three_jobs_a_third_starts_beside_one_compile():
    """Depth 3 (16+ CPUs per GPU): while a job times and another compiles, a third may
    start compiling; never a fourth, and never beside two compiles."""
    lane = Lane()
    lane.begin("a", reserved=False)
    assert lane.may_start(3) and not lane.may_start(2)  # one compiles: a second may (3 only)
    lane.begin("b", reserved=False)
    assert not lane.may_start(3)  # two compile
    release = lane.acquire("a")
    assert lane.may_start(3) and not lane.may_start(2)  # a times, b compiles
    lane.begin("c", reserved=False)
    assert not lane.may_start(3)  # three in flight
    release()
    lane.end("a")
    assert not lane.may_start(3)  # b and c compile


def test_an_exclusive_evaluation_waits_until_no_other_job_compiles():
    """Baselines that later scores divide by (and rematches) are timed with no other job of
    the GPU in its CPU part, and no job starts meanwhile."""
    lane, got = Lane(), threading.Event()
    lane.begin("other", reserved=False)
    lane.begin("exclusive", reserved=False)

    def exclusive() -> None:
        release = lane.acquire("exclusive", exclusive=True)
        got.set()
        assert not lane.may_start(2)
        release()

    t = threading.Thread(target=exclusive)
    t.start()
    assert not got.wait(0.3)  # "other" still compiles
    release_other = lane.acquire("other")  # it reaches its gate first and takes it
    assert not got.wait(0.2)
    release_other()
    assert got.wait(5)
    t.join(5)
    lane.end("other")
    lane.end("exclusive")


def test_a_leaked_gate_is_freed_when_its_job_ends():
    lane = Lane()
    lane.begin("a", reserved=False)
    lane.acquire("a")  # the runner never releases
    lane.end("a")
    lane.begin("b", reserved=False)
    lane.acquire("b")()  # does not block
    lane.end("b")


def test_slot_counters_split_compile_timing_and_gpu_idle():
    slot = WorkerSlot("w", 0, None, None)
    slot.set("idle")
    slot.sync({"a": "compile"})
    time.sleep(0.2)
    slot.sync({"a": "timing", "b": "compile"})
    time.sleep(0.2)
    slot.sync({"b": "wait"})
    time.sleep(0.1)
    slot.sync({})
    time.sleep(0.1)
    s = slot.snapshot()
    assert s.state == "idle" and s.jobs == 0
    assert s.compile_s == pytest.approx(0.4, abs=0.08)
    assert s.timing_s == pytest.approx(0.2, abs=0.08)
    assert s.gpu_idle_s == pytest.approx(0.4, abs=0.08)
    assert s.busy_s == pytest.approx(0.5, abs=0.08) and s.idle_s == pytest.approx(0.1, abs=0.08)


# ------------------------------------------------------------------ a local slot, two jobs

@pytest.mark.parametrize("per_slot", [2, 1])
def test_two_jobs_on_one_slot_never_share_the_gate(tmp_path, per_slot):
    ex = LocalExecutor([None], tmp_path / "work", log_dir=tmp_path / "logs", runner=sleepy_runner,
                       prestart=False, jobs_per_slot=per_slot)
    assert ex.capacity == per_slot  # the loop keeps that many candidates in flight
    try:
        t0 = time.monotonic()
        futs = [ex.submit(EvalJob(f"cand-{i}", "candidate", "gqa", "smoke", "0.6"))
                for i in range(4)]
        data = [f.result(timeout=60).data for f in futs]
        wall = time.monotonic() - t0
        w = ex.workers()[0]
    finally:
        ex.shutdown()
    gates = sorted((d["gate"], d["ungate"]) for d in data)
    assert all(a[1] <= b[0] for a, b in zip(gates, gates[1:]))  # never two inside the gate
    spans = sorted((d["started"], d["ended"]) for d in data)
    overlapped = any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    assert overlapped == (per_slot == 2)  # with overlap the next compiles while one times
    assert w.jobs_done == 4 and w.timing_s == pytest.approx(1.2, abs=0.3)
    assert w.compile_s == pytest.approx(1.2, abs=0.3) and w.gpu_idle_s > 0
    assert w.timing_s + w.gpu_idle_s <= wall + 0.5
    if per_slot == 2:
        assert wall < 2.3  # 4 x 0.3 s compile hidden behind timing, but the first
    else:
        assert wall >= 2.4


def _two_stage_runner(job: EvalJob, gpu, workdir: Path, lane=None, **_) -> JobResult:
    """A candidate as a run evaluates it: compile, GPU (the quick pre-screen), compile
    again, GPU (the full suite); job.source holds the four durations in seconds."""
    c1, g1, c2, g2 = (float(x) for x in job.source.split(","))
    gates = []
    for compile_s, gpu_s in ((c1, g1), (c2, g2)):
        lane.back_to_compile(job.job_id)
        time.sleep(compile_s)
        release = lane.acquire(job.job_id)
        t0 = time.monotonic()
        time.sleep(gpu_s)
        gates.append((t0, time.monotonic()))
        release()
    return JobResult(job_id=job.job_id, kind=job.kind, worker="", gpu=gpu,
                     data={"status": "ok", "gates": gates})


def _keep_fed(ex: LocalExecutor, n: int, source: str) -> tuple[float, list]:
    """Submit n jobs keeping `capacity` in flight, a new one as soon as any ends (as the
    loop does); wall and gate spans."""
    t0, futs, done = time.monotonic(), set(), []
    while len(done) < n:
        while len(futs) < ex.capacity and len(done) + len(futs) < n:
            futs.add(ex.submit(EvalJob(f"c{len(done) + len(futs)}", "candidate", "gqa",
                                       "default", source)))
        ended, futs = wait(futs, timeout=60, return_when=FIRST_COMPLETED)
        assert ended, "no job ended within 60 s"
        done += [f.result() for f in ended]
    return time.monotonic() - t0, [g for r in done for g in r.data["gates"]]


def test_a_third_job_hides_the_second_compile_of_compile_heavy_candidates(tmp_path):
    """Gluon-like candidates (quick compile 6.4 s, GPU 3.5 s, full compile 11.7 s, GPU 10.3
    s: H100 logs of the 20-minute run, at 1/100 scale): with two jobs per GPU the GPU waits
    whenever both compile; a third job (two compiling beside the timed one) cuts that
    wait and the wall time, and the gate is still never shared."""
    source = ",".join(str(x / 100) for x in (6.4, 3.5, 11.7, 10.3))
    out = {}
    for depth in (2, 3):
        ex = LocalExecutor([None], tmp_path / f"w{depth}", log_dir=tmp_path / f"l{depth}",
                           runner=_two_stage_runner, prestart=False, jobs_per_slot=depth)
        try:
            wall, gates = _keep_fed(ex, 24, source)
            w = ex.workers()[0]
        finally:
            ex.shutdown()
        gates.sort()
        assert all(a[1] <= b[0] for a, b in zip(gates, gates[1:])), depth  # never shared
        out[depth] = (wall, w.gpu_idle_s)
    (wall2, idle2), (wall3, idle3) = out[2], out[3]
    assert wall3 < 0.95 * wall2 and idle3 < 0.75 * idle2, out


def test_overlap_depth_and_compile_threads_follow_the_cpus():
    from evolve.executors.procs import compile_threads, overlap_depth

    assert overlap_depth(16, 1) == 3 and overlap_depth(64, 4) == 3  # the H100 machines
    assert overlap_depth(8, 1) == 2 and overlap_depth(16, 2) == 2 and overlap_depth(2, 1) == 2
    assert compile_threads(16, 1) is None and compile_threads(16, 1, compiling=2) == 7
    assert compile_threads(64, 4, compiling=2) == 7 and compile_threads(16, 2) == 8
    assert compile_threads(2, 1, compiling=2) == 1


class _RecordingLane(Lane):
    """A lane that notes who held the gate when, and whether exclusively."""

    held: list = []

    def acquire(self, job_id: str, exclusive: bool = False):
        release = super().acquire(job_id, exclusive)
        t0 = time.monotonic()

        def note() -> None:
            self.held.append((t0, time.monotonic(), job_id, exclusive))
            release()
        return note


@pytest.mark.slow  # ~20 s: three real evaluations on the interpreter
def test_real_evaluations_two_per_slot_take_the_gate_in_turn(tmp_path, monkeypatch):
    """run_job -> evaluate(acquire_gpu=lane.acquire) on the interpreter, two jobs in flight:
    the first times its baselines exclusively, the next reuse them; never two inside."""
    from evolve.executors import local
    from tests.agent_support import seed_source

    monkeypatch.setattr(local, "Lane", _RecordingLane)
    _RecordingLane.held = []
    ex = LocalExecutor([None], tmp_path / "work", log_dir=tmp_path / "logs", prestart=False,
                       jobs_per_slot=2)
    try:
        futs = [ex.submit(EvalJob(f"cand-{i}", "candidate", "gqa", "smoke", seed_source(),
                                  baselines=["sdpa-cpu"])) for i in range(3)]
        res = [f.result(timeout=300) for f in futs]
        w = ex.workers()[0]
    finally:
        ex.shutdown()
    assert [r.data.get("status") for r in res] == ["ok"] * 3, [r.error or r.data for r in res]
    held = sorted(_RecordingLane.held)
    assert sorted(h[2] for h in held) == ["cand-0", "cand-1", "cand-2"]
    assert all(a[1] <= b[0] for a, b in zip(held, held[1:]))
    assert held[0][3] and not held[-1][3]  # baselines timed alone, then cached
    assert res[-1].data["baselines_cached"]
    assert w.jobs_done == 3 and w.timing_s > 0 and w.compile_s > 0


# ------------------------------------------------------------------ the flag, status

def test_no_overlap_is_stored_in_run_toml_and_resume_overrides_it(tmp_path):
    from typer.testing import CliRunner

    from evolve.cli import build_app
    from evolve.driver import StartOptions, apply_resume_overrides, create_run
    from evolve.run import RunHandle

    run = create_run(StartOptions(target="gqa", operator="offline", runs_dir=tmp_path, name="r",
                                  overlap=False))
    root = run.paths.root
    run.close()
    assert "overlap = false" in (root / "run.toml").read_text()
    again = RunHandle.open(root, writable=True)
    assert again.config.overlap is False
    apply_resume_overrides(again, None, None, None)  # not given: kept
    assert again.config.overlap is False
    apply_resume_overrides(again, None, None, None, overlap=True)
    again.close()
    assert RunHandle.open(root).config.overlap is True
    for cmd in ("start", "resume"):
        out = CliRunner().invoke(build_app(), [cmd, "--help"], env={"COLUMNS": "200"}).output
        assert "--overlap" in out and "--no-overlap" in out


def test_status_shows_compile_timing_and_gpu_idle_per_worker():
    from rich.console import Console

    from evolve.report import workers_table

    row = {"name": "local-gpu0", "gpu": 0, "state": "timing", "job_id": "cand-3", "jobs_done": 7,
           "busy_s": 90.0, "idle_s": 10.0, "compile_s": 61.0, "timing_s": 77.0, "gpu_idle_s": 23.0,
           "restarts": 0}
    console = Console(width=80, record=True)
    console.print(workers_table([row]))
    text = console.export_text()
    assert "gpu-idle" in text and all(len(ln) <= 80 for ln in text.splitlines())
    line = next(ln for ln in text.splitlines() if "local-gpu0" in ln)
    assert [c for c in line.split() if c in ("61", "77", "23")] == ["61", "77", "23"]


LAUNCH_AT_IMPORT = '''
import triton
import triton.language as tl


@triton.jit
def _touch(x_ptr):
    tl.store(x_ptr, 1.0)


_buf = torch.zeros(1, device="cuda")
_touch[(1,)](_buf)
'''


@pytest.mark.gpu
def test_gpu_a_triton_launch_before_the_gate_is_refused(tmp_path):
    """On a GPU: a candidate launching a Triton kernel at import time (before its gate)
    gets LaunchRefused; an honest one passes the gate and launches normally after it."""
    from evaluator import get_target

    cached = {s.name: {"cudnn": 1.0} for s in get_target("gqa").suite("smoke")}
    opts = dict(baselines=("cudnn",), baseline_ms=cached, static_check=False)
    bad = tmp_path / "launches.py"
    bad.write_text(NAIVE.read_text() + LAUNCH_AT_IMPORT)
    gate = _Gate()
    res = evaluate(bad, "gqa", "smoke", EvalOptions(**opts), acquire_gpu=gate)
    assert res.status == "rejected" and "before the evaluator's GPU gate" in res.failure.message
    assert gate.asked == []
    gate = _Gate()
    res = evaluate(NAIVE, "gqa", "smoke", EvalOptions(**opts), acquire_gpu=gate)
    assert res.ok and res.device == "cuda", res.to_json()
    assert len(gate.asked) == len(gate.released) == 1


def test_discovery_before_the_gate_leaves_huge_inputs_to_first_use(tmp_path):
    """Before its gate a worker shares the GPU's memory with the evaluation being timed:
    discovery skips shapes whose empty inputs exceed a quarter of it (the 32 GiB decode
    cache at B=64, S_max=128k), and keeps every gqa shape."""
    from evaluator.plan import build_plan
    from evaluator.targets import get_target
    from evaluator.worker import Worker

    for name, dropped in (("decode", {"B=64", "S_max=131072"}), ("gqa", None)):
        t = get_target(name)
        plan = build_plan(t, "default", device="cpu", seed=0, baselines=[])
        w = Worker(plan, tmp_path, tmp_path, [])
        shapes = t.suite("default")
        kept = w._fit_beside_another(shapes, 80 * 2**30)  # an 80 GB card
        gone = [s.name for s in shapes if s not in kept]
        if dropped is None:
            assert kept == shapes
        else:
            assert gone and all(all(k in n for k in dropped) for n in gone), gone
            assert len(kept) == len(shapes) - len(gone)
