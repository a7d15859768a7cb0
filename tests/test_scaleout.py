"""Scale-out (issue #10) on CPU: the local executor's workers (replacement, re-queue, lost
jobs), --gpus/--proposers validation, N concurrent agent sessions with one writer, and
an offline run with 2 proposers that resumes."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from datetime import datetime

import pytest
from fixture_run import cli_env, evolve_cmd, procs_under
from lineage_checks import assert_consistent

import evolve.executors as executors
from evaluator import EvalResult
from evolve.executors import EvalJob, ExecutorError, parse_gpus, resolve_gpus
from evolve.executors.local import LocalExecutor
from evolve.jobs import BaselineCache, prescreen_verdict
from evolve.paths import default_seed
from tests.agent_support import SECRET, seed_source
from tests.llm_server import ScriptedLLM, dynamic, tool_calls_message
from tests.scaleout_support import sleepy_runner



def _wait(cond, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------ validation

def test_gpus_parsing_and_errors(monkeypatch):
    assert parse_gpus("0,1") == [0, 1] and parse_gpus(" 3 ") == [3]
    assert parse_gpus("all") is None and parse_gpus(None) is None
    for bad, msg in (("a", "not a GPU index"), ("0,0", "listed twice"), ("1,,2", "not a GPU")):
        with pytest.raises(ExecutorError, match=msg):
            parse_gpus(bad)
    monkeypatch.setattr(executors, "_VISIBLE", [])
    assert resolve_gpus(None) == [None]  # no GPU: one interpreter worker
    with pytest.raises(ExecutorError, match="no CUDA GPU is visible"):
        resolve_gpus([0])
    monkeypatch.setattr(executors, "_VISIBLE", [0, 1])
    assert resolve_gpus(None) == [0, 1] and resolve_gpus([1]) == [1]
    with pytest.raises(ExecutorError, match=r"GPU 2 is not visible here \(visible: 0,1\)"):
        resolve_gpus([2])
    monkeypatch.setattr(executors.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ExecutorError, match=r"pip install '\.\[ray\]'"):
        executors.check_executor("ray")
    with pytest.raises(ExecutorError, match="unknown executor"):
        executors.check_executor("slurm")


@pytest.mark.parametrize("args,msg", [
    (["--gpus", "0"], "no CUDA GPU is visible"),
    (["--gpus", "x"], "not a GPU index"),
    (["--proposers", "0"], "--proposers must be at least 1"),
    (["--executor", "slurm"], "unknown executor"),
    (["--ray-address", "10.0.0.1:6379"], "--ray-address needs --executor ray"),
])
def test_start_rejects_bad_scaleout_flags(tmp_path, args, msg):
    if "--gpus" in args and args[1] == "0" and executors.visible_gpus():
        pytest.skip("this machine has a GPU 0")
    proc = subprocess.run(evolve_cmd("start", "--target", "gqa", "--operator", "offline",
                                     "--runs-dir", str(tmp_path), *args),
                          capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert msg in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing was created


# ------------------------------------------------------------------ local executor

def test_a_runner_bug_is_an_error_result_and_the_slot_serves_the_next_job(tmp_path):
    ex = LocalExecutor([None], tmp_path / "work", log_dir=tmp_path / "logs",
                       runner=sleepy_runner, prestart=False)
    try:
        bad = ex.submit(EvalJob("cand-7", "candidate", "gqa", "smoke", "raise")).result(120)
        assert bad.lost is None and "a runner bug" in bad.error and bad.worker == "local-cpu"
        ok = ex.submit(EvalJob("cand-8", "candidate", "gqa", "smoke", "0.2")).result(120)
        assert ok.error is None and ok.data["status"] == "ok"
        w = ex.workers()[0]
        assert w.jobs_done == 2 and w.state == "idle" and w.pid == os.getpid()
        assert "a runner bug" in (tmp_path / "logs" / "worker-local-cpu.log").read_text()
    finally:
        ex.shutdown()
    assert ex.workers()[0].state == "stopped"


def test_abandoning_the_executor_kills_the_running_evaluation(tmp_path):
    """shutdown(wait=False) (SIGINT/SIGTERM) kills the evaluator processes of the running
    job; queued jobs never start."""
    ex = LocalExecutor([None], tmp_path / "work", log_dir=tmp_path / "logs", prestart=False)
    job = EvalJob("cand-1", "candidate", "gqa", "smoke", seed_source(), timeout_s=300)
    running, queued = ex.submit(job), ex.submit(job)
    _wait(lambda: procs_under(tmp_path / "work"), what="the evaluator's processes")
    ex.shutdown(wait=False)
    _wait(lambda: not procs_under(tmp_path / "work"), timeout=30, what="no process left")
    assert queued.cancelled() and ex.workers()[0].state == "stopped"
    assert running.done()


def test_a_worker_reuses_its_baseline_times_but_never_for_rematches(tmp_path):
    """On the interpreter the primary baseline is sdpa-cpu: ask for it by name."""
    ex = LocalExecutor([None], tmp_path / "work", log_dir=tmp_path / "logs")
    try:
        def run(kind: str, i: int):
            job = EvalJob(f"{kind}-{i}", kind, "gqa", "smoke", seed_source(),
                          baselines=["sdpa-cpu"], champion_source=seed_source(), rounds=2)
            return ex.submit(job).result(timeout=600)
        first, second = run("probe", 0), run("candidate", 1)
        assert first.data["status"] == second.data["status"] == "ok"
        assert not first.data.get("baselines_cached") and second.data.get("baselines_cached")
        assert [s["baselines"] for s in second.data["shapes"]] == \
            [s["baselines"] for s in first.data["shapes"]]
        rematch = run("rematch", 2)
        assert rematch.error is None and "baselines_cached" not in rematch.data
    finally:
        ex.shutdown()


def test_workers_share_one_queue_and_never_overlap_on_a_gpu(tmp_path):
    ex = LocalExecutor([None, None], tmp_path / "work", log_dir=tmp_path / "logs",
                       runner=sleepy_runner)
    try:
        futs = [ex.submit(EvalJob(f"probe-{i}", "probe", "gqa", "smoke", "1.0"))
                for i in range(4)]
        results = [f.result(timeout=120) for f in futs]
        by_worker: dict[str, list] = {}
        for r in results:
            by_worker.setdefault(r.worker, []).append((r.data["started"], r.data["ended"]))
        assert sorted(by_worker) == ["local-cpu0", "local-cpu1"]
        for spans in by_worker.values():  # one job at a time per worker
            spans.sort()
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        a, b = by_worker["local-cpu0"][0], by_worker["local-cpu1"][0]
        assert a[0] < b[1] and b[0] < a[1]  # the two workers ran at the same time
        ws = ex.workers()
        assert [w.jobs_done for w in ws] == [2, 2]
        assert all(w.compile_s > 0.5 and w.timing_s > 0.5 for w in ws)
    finally:
        ex.shutdown()


def _result(device: str = "cuda", cached: bool = False, **shapes: dict) -> EvalResult:
    """An ok EvalResult with the given per-shape fields (tiny fixture shapes)."""
    return EvalResult.from_dict({"status": "ok", "target": "gqa", "suite": "quick",
                                 "device": device, "baselines_cached": cached,
                                 "shapes": [{"name": n, "B": 1, "Hq": 1, "Hkv": 1, "S": 1,
                                             "D": 1, "causal": False, "dtype": "fp16", **f}
                                            for n, f in shapes.items()]})


def test_prescreen_verdict_and_baseline_cache():
    champ = {"a": 1.0, "b": 0.64}
    quick = _result(a={"speedup": 0.5}, b={"speedup": 0.32}, c={"speedup": 9.0})
    msg = prescreen_verdict(quick, {"champion_speedups": champ, "ratio": 0.9})
    assert msg == "quick pre-screen: 0.40 < 0.9 x champion 0.80"
    good = _result(a={"speedup": 0.95}, b={"speedup": 0.6})
    assert prescreen_verdict(good, {"champion_speedups": champ, "ratio": 0.9}) is None
    assert prescreen_verdict(quick, {"champion_speedups": {"z": 1.0}}) is None
    now = [100.0]
    cache = BaselineCache(ttl_s=600, clock=lambda: now[0])
    cache.update("gqa", _result(a={"baselines": {"cudnn": 0.5}}, b={"baselines": {"cudnn": 0.7}}))
    assert cache.lookup("gqa", ["a", "b"], ["cudnn"]) == {"a": {"cudnn": 0.5},
                                                         "b": {"cudnn": 0.7}}
    assert cache.lookup("gqa", ["a", "x"], ["cudnn"]) is None  # partial: measure again
    cache.update("gqa", _result(cached=True, a={"baselines": {"cudnn": 9.9}}))
    assert cache.lookup("gqa", ["a"], ["cudnn"]) == {"a": {"cudnn": 0.5}}  # not refreshed
    now[0] += 601
    assert cache.lookup("gqa", ["a"], ["cudnn"]) is None  # expired


def _gpu_loop(run_dir):
    from rich.console import Console

    from evolve.loop import Budget, EvolutionLoop
    from evolve.display import PlainProgress, ProgressState
    from evolve.run import RunHandle
    from tests.test_loop import _Scripted

    run = RunHandle.open(run_dir)
    state = ProgressState(run.name, "gqa", "offline", None)
    return run, EvolutionLoop(run, _Scripted("none"), PlainProgress(state, Console(quiet=True)),
                              Budget(), gpu=True)


def test_noise_gate_skips_a_rematch_and_prescreen_uses_the_champion(fixture_run,
                                                                    tmp_path_factory):
    import dataclasses

    from fixture_run import copy_fixture_run

    from evolve.records import Event

    run, loop = _gpu_loop(copy_fixture_run(tmp_path_factory.getbasetemp(), "noise"))
    champ = run.store.best()
    other = next(c for c in run.store.candidates("ok") if c.id != champ.id)
    run.store.add_event(Event(kind="rematch", message="earlier", candidate_id=other.id,
                              data_json=json.dumps({"noise": 0.25, "better": False})))
    assert loop.champion.last_noise() == 0.25
    loop.champion.consider(dataclasses.replace(other, score=champ.score * 1.2))  # within noise
    assert not loop.champion.busy
    assert len(run.store.events("rematch")) == 1 and run.store.best().id == champ.id
    assert "rematch-skipped" in run.paths.run_log.read_text()
    assert loop.champion.prescreen() is None  # smoke suite: no pre-screen
    run.config.suite = "default"
    pre = loop.champion.prescreen()
    assert pre["suite"] == "quick" and pre["ratio"] == 0.9
    assert pre["champion_speedups"] == {s.name: s.speedup for s in champ.evaluation.shapes}
    assert len(pre["champion_speedups"]) >= 2
    run.config.prescreen = False
    assert loop.champion.prescreen() is None


# ------------------------------------------------------------------ proposers

class _Sessions:
    """Replies for concurrent agent sessions, built from each conversation: write a unique
    variant of the seed, then submit it. Each reply takes DELAY_S; the server's peak number
    of requests in flight at once shows that sessions overlapped."""

    DELAY_S = 1.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.variants = 0
        self.active = 0
        self.peak = 0

    def __call__(self, req: dict) -> dict:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.DELAY_S)
            tools = [m for m in req["messages"] if m.get("role") == "tool"]
            if not tools:
                with self.lock:
                    self.variants += 1
                    n = self.variants
                src = seed_source() + f"\n# variant {n}\n"
                return tool_calls_message([("write_kernel", {"source": src})], usage=(500, 50))
            return tool_calls_message([("submit", {"hypothesis": "a variant of the seed"})],
                                      usage=(600, 20))
        finally:
            with self.lock:
                self.active -= 1


def _overlapping(sessions) -> bool:
    spans = sorted((datetime.fromisoformat(s.started_at), datetime.fromisoformat(s.ended_at))
                   for s in sessions)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


@pytest.mark.slow  # ~1-2 min on 2 cores: 8 smoke evaluations
def test_three_proposers_with_agent_sessions_keep_one_consistent_lineage(tmp_path):
    replies = _Sessions()
    with ScriptedLLM([dynamic(replies)], loop_last=True) as srv:
        env = {k: v for k, v in cli_env().items() if not k.startswith("OPENAI_")}
        env.update(OPENAI_API_KEY=SECRET, EVOLVE_AGENT_BACKOFF_S="0.01", NO_COLOR="1")
        proc = subprocess.run(
            evolve_cmd("start", "--target", "gqa", "--operator", "agent", "--base-url",
                       srv.base_url, "--max-candidates", "8", "--proposers", "3",
                       "--runs-dir", str(tmp_path / "runs"), "--name", "p3"),
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        srv.assert_clean()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    run = assert_consistent(tmp_path / "runs" / "p3")
    try:
        cands = run.store.candidates()
        sessions = {s.id: s for s in run.store.sessions()}
        assert len(cands) == 8 and all(c.operator == "agent" for c in cands[1:])
        for c in cands[1:]:  # every candidate's session was recorded (through the writer)
            s = sessions[c.session_id]
            assert s.outcome == "submitted" and s.parent_id == c.parent_id
            assert (c.tokens_in, c.tokens_out) == (s.tokens_in, s.tokens_out) == (1100, 70)
            assert len(run.store.agent_steps(s.id)) >= 4
        assert len(sessions) == 7  # the budget counted sessions in flight: none wasted
        assert replies.peak >= 2, "the sessions never overlapped"
        assert _overlapping(sessions.values())
        kinds = [e.kind for e in run.store.events()]
        assert "operator_error" not in kinds and kinds[-1] == "stop"
        assert run.store.run().config_json and json.loads(run.store.run().config_json)
        assert run.config.proposers == 3 and run.config.executor == "local"
    finally:
        run.close()


@pytest.mark.slow  # ~1-2 min: 7 smoke evaluations
def test_offline_two_proposers_then_resume_and_status_shows_workers(tmp_path):
    runs = tmp_path / "runs"
    first = subprocess.run(
        evolve_cmd("start", "--target", "gqa", "--operator", "offline", "--proposers", "2",
                   "--max-candidates", "4", "--runs-dir", str(runs), "--name", "off2",
                   "--rng-seed", "3", "--seed", str(default_seed("gqa"))),
        capture_output=True, text=True, env=cli_env(), timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    run = assert_consistent(runs / "off2")
    assert len(run.store.candidates()) == 4 and run.config.proposers == 2
    run.close()
    again = subprocess.run(evolve_cmd("resume", str(runs / "off2"), "--max-candidates", "7",
                                      "--proposers", "3"),
                           capture_output=True, text=True, env=cli_env(), timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    run = assert_consistent(runs / "off2")
    try:
        assert len(run.store.candidates()) == 7 and run.config.proposers == 3
        workers = run.store.workers()
        assert [w["name"] for w in workers] == ["local-cpu"]
        assert workers[0]["state"] == "stopped" and workers[0]["jobs_done"] >= 3
    finally:
        run.close()
    status = subprocess.run(evolve_cmd("status", str(runs / "off2")), capture_output=True,
                            text=True, env={**cli_env(), "COLUMNS": "200"}, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "evaluation workers" in status.stdout and "local-cpu" in status.stdout
    assert "3 proposer(s), local executor" in status.stdout
