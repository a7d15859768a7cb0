"""The Ray executor (issue #10) on CPU: a local Ray instance with two interpreter actors runs
real evaluations; actors killed mid-job are replaced and their job re-queued once; hung
jobs are killed; an existing (one-machine) cluster gets the orchestrator's code shipped;
`evolve start --executor ray` runs a consistent lineage. Skipped without Ray
(`pip install '.[ray]'`); CI installs it."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from fixture_run import cli_env, evolve_cmd, procs_under  # noqa: E402
from lineage_checks import assert_consistent  # noqa: E402
from ray_support import LoopbackCluster, pid_alive  # noqa: E402

from evolve.executors import ray_cluster  # noqa: E402
from evolve.executors.base import EvalJob, ExecutorError  # noqa: E402
from evolve.executors.ray_executor import RayExecutor  # noqa: E402
from evolve.executors.ray_cluster import ray_gpus  # noqa: E402
from evolve.paths import REPO_ROOT, default_seed  # noqa: E402
from candidates.make import source  # noqa: E402

CANDIDATES = REPO_ROOT / "tests" / "candidates"
RUNNER = "tests.ray_support:runner"


def _wait(cond, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _job(job_id: str, source: str, **kw) -> EvalJob:
    return EvalJob(job_id, "candidate", "gqa", "smoke", source, **kw)


def _slot_running(ex: RayExecutor, job_id: str):
    def find():
        for s in ex.slots:
            if s.status.job_id == job_id and s.actor is not None:
                return s
        return None
    return _wait(find, what=f"an actor running {job_id}")


def _restarts(ex: RayExecutor) -> int:
    return sum(w.restarts for w in ex.workers())


# ------------------------------------------------------------------ no Ray needed

def test_gpus_argument_and_address_parsing():
    parse = ray_gpus
    assert parse(None, None) == (1, None, "cpu")
    assert parse(None, 3) == (3, None, "cpu")
    assert parse([None], None) == (1, None, "cpu")
    assert parse(2, None) == (2, None, "gpu")
    assert parse([1, 3], None) == (2, [1, 3], "gpu")
    assert parse("all", None)[2] == "all" and parse("auto", None)[2] == "auto"
    for bad in ("x", [1, 1], -1):
        with pytest.raises(ExecutorError):
            parse(bad, None)
    assert ray_cluster._host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert ray_cluster._host_port("ray://head:10001") == ("head", 10001)
    assert ray_cluster._host_port("[::1]:6379") == ("::1", 6379)
    assert ray_cluster._host_port("auto") is None


def test_an_actor_passes_rays_physical_gpu_index_and_works_on_its_own_node(monkeypatch):
    from evolve.executors import ray_actor

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as Ray sets it for a num_gpus=1 actor
    assert ray_actor.assigned_gpu(True) == 3      # the evaluator sets CUDA_VISIBLE_DEVICES=3
    assert ray_actor.assigned_gpu(False) is None  # a CPU actor: the interpreter
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2a")  # a UUID: inherited unchanged
    assert ray_actor.assigned_gpu(True) is None
    here = socket.gethostname()
    assert ray_actor.node_workdir("/runs/r/scratch", here, "ray-actor-0") == \
        Path("/runs/r/scratch")
    other = ray_actor.node_workdir("/runs/r/scratch", "head-node", "ray-actor-0")
    assert other.parts[-3:-2] != ("r",) and other.name == "ray-actor-0"
    assert "evolve-ray" in other.parts


def test_the_cluster_must_have_a_gpu_and_a_cpu_per_worker():
    class FakeRay:
        @staticmethod
        def cluster_resources():
            return {"CPU": 4.0, "GPU": 2.0}

    conn = ray_cluster.Connection(FakeRay, owned=False, address="head:6379")
    ray_cluster.check_resources(conn, 2, True, 1.0)
    with pytest.raises(ExecutorError, match="has 2 GPU.*3 GPU worker"):
        ray_cluster.check_resources(conn, 3, True, 1.0)
    with pytest.raises(ExecutorError, match="has 4 CPU.*5 worker"):
        ray_cluster.check_resources(conn, 5, False, 1.0)
    assert ray_cluster.cluster_gpus(conn) == 2


def test_unreachable_address_and_missing_ray_are_clear_errors(tmp_path, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(ExecutorError, match="cannot reach the Ray cluster at 127.0.0.1"):
        RayExecutor(f"127.0.0.1:{port}", None, tmp_path)
    assert time.monotonic() - t0 < 30
    assert not ray.is_initialized()
    import builtins
    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ExecutorError, match=r"pip install '\.\[ray\]'"):
        ray_cluster.import_ray()


# ------------------------------------------------------------------ a local Ray instance

@pytest.fixture(scope="class")
def ex(tmp_path_factory):
    """One local Ray instance (two CPU actors) for the tests of TestLocalRay."""
    base = tmp_path_factory.mktemp("ray")
    ex = RayExecutor(None, None, base / "work", n_workers=2, runner=RUNNER, grace_s=2.0,
                     log_dir=base / "logs", status_every_s=0.3, kill_wait_s=3.0)
    yield ex
    ex.shutdown()
    assert not ray.is_initialized()
    assert ex.conn.temp_dir is not None and not ex.conn.temp_dir.exists()


class TestLocalRay:
    """A local Ray instance: real evaluations, stage polling, lost and hung actors."""

    def test_real_evaluations_on_two_actors(self, ex):
        assert ex.capacity == 2 and not ex.gpu_workers
        jobs = [_job("honest", default_seed("gqa").read_text()),
                _job("mismatch", source("wrong_numbers")),
                _job("syntax", (CANDIDATES / "syntax_error.py").read_text())]
        futs = {j.job_id: ex.submit(j) for j in jobs}
        res = {k: f.result(timeout=600) for k, f in futs.items()}
        ok = res["honest"]
        assert ok.lost is None and ok.error is None, ok
        assert ok.data["status"] == "ok" and ok.data["score"] > 0
        assert ok.data["device"] == "interpreter" and ok.gpu is None
        assert "checker" in ok.log or ok.log  # the evaluation log came back to the driver
        assert res["mismatch"].data["status"] == "rejected"
        assert res["mismatch"].data["failure"]["class"] == "mismatch"
        assert res["syntax"].data["failure"]["class"] == "syntax"
        assert {r.worker for r in res.values()} == {"ray-actor-0", "ray-actor-1"}
        workers = ex.workers()
        assert [w.name for w in workers] == ["ray-actor-0", "ray-actor-1"]
        assert sum(w.jobs_done for w in workers) == 3
        assert all(w.state == "idle" and w.pid and w.busy_s > 0 for w in workers)
        assert sum(w.compile_s + w.timing_s for w in workers) > 0
        log = (ex.log_path).read_text()
        assert "ray-actor-0 ready" in log and str(REPO_ROOT / "evolve") in log  # local code

    def test_stage_polling_shows_compile_then_timing(self, ex):
        fut = ex.submit(_job("stages", "sleep:3"))
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while not fut.done() and time.monotonic() < deadline:
            seen |= {w.state for w in ex.workers() if w.job_id == "stages"}
            time.sleep(0.1)
        res = fut.result(timeout=60)
        assert res.data["status"] == "ok" and res.data["attempt"] == 0
        assert {"compile", "timing"} <= seen, seen

    def test_an_actor_killed_mid_job_is_replaced_and_the_job_completes(self, ex):
        before = _restarts(ex)
        fut = ex.submit(_job("killed", "sleep:4"))
        slot = _slot_running(ex, "killed")
        child_file = ex.workdir / "killed.a0.child"
        child = int(_wait(lambda: child_file.is_file() and child_file.read_text(),
                          what="the job's child process"))
        _wait(lambda: child in slot.known, what="the executor to see the child process")
        old_pid = slot.status.pid
        ray.kill(slot.actor)  # as a node failure / OOM kill would
        res = fut.result(timeout=120)
        assert res.lost is None and res.data["status"] == "ok"
        assert res.data["attempt"] == 1  # re-queued once
        assert _restarts(ex) == before + 1
        # the dead actor's child (its own session, orphaned) was reaped on its node
        _wait(lambda: not pid_alive(child), timeout=30, what="the orphan to be killed")
        assert old_pid not in {w.pid for w in ex.workers()}
        assert "lost during job killed" in ex.log_path.read_text()

    def test_a_job_whose_actor_dies_twice_is_lost(self, ex):
        before = _restarts(ex)
        res = ex.submit(_job("dies", "die")).result(timeout=180)
        assert res.lost and "twice" in res.lost and "re-queued once" in res.lost
        assert res.data == {} and _restarts(ex) == before + 2
        again = ex.submit(_job("after", "sleep:0.2")).result(timeout=120)
        assert again.data["status"] == "ok"  # the replacements serve the next jobs

    def test_a_hung_job_is_killed_twice_then_lost(self, ex):
        before = _restarts(ex)
        t0 = time.monotonic()
        res = ex.submit(_job("hung", "sleep:120", timeout_s=1.0)).result(timeout=180)
        assert res.lost and "hung" in res.lost and "3 s" in res.lost
        assert time.monotonic() - t0 < 90
        assert _restarts(ex) == before + 2
        for attempt in (0, 1):  # each attempt's processes were killed with its actor
            child = int((ex.workdir / f"hung.a{attempt}.child").read_text())
            _wait(lambda c=child: not pid_alive(c), timeout=30, what="the hung job's child")

    def test_a_runner_exception_is_an_error_result_not_a_lost_worker(self, ex):
        before = _restarts(ex)
        res = ex.submit(_job("raises", "raise")).result(timeout=120)
        assert res.lost is None and res.error and "a runner bug" in res.error
        assert _restarts(ex) == before

    def test_workers_that_cannot_start_fail_the_jobs_clearly(self, ex, tmp_path):
        """A second executor in the same process shares the running Ray (and leaves it up);
        its actor cannot import its runner."""
        bad = RayExecutor(None, None, tmp_path / "work", runner="no_such_module:run",
                          cpus_per_worker=0, max_start_failures=1, log_dir=tmp_path)
        try:
            assert not bad.conn.owned
            _wait(lambda: bad.workers()[0].state == "dead", timeout=120, what="a dead slot")
            with pytest.raises(ExecutorError, match="no Ray worker could start"):
                bad.submit(_job("never", "sleep:0")).result(timeout=30)
            assert "no_such_module" in (tmp_path / "workers-ray.log").read_text()
        finally:
            bad.shutdown()
        assert ray.is_initialized()
        assert ex.submit(_job("still", "sleep:0.1")).result(timeout=60).data["status"] == "ok"

    def test_with_overlap_an_actor_runs_two_jobs_but_never_two_inside_its_gate(self, ex, tmp_path):
        """A second executor on the same Ray: one actor, two jobs in flight (as a GPU actor
        with overlap); the next job is sent once the first holds the gate."""
        two = RayExecutor(None, None, tmp_path / "work", runner=RUNNER, cpus_per_worker=0,
                          jobs_per_worker=2, log_dir=tmp_path, status_every_s=0.2)
        assert two.capacity == 2
        try:
            futs = [two.submit(_job(f"ov{i}", "sleep:2")) for i in range(3)]
            data = [f.result(timeout=120).data for f in futs]
            w = two.workers()[0]
        finally:
            two.shutdown()
        gates = sorted((d["gate"], d["ungate"]) for d in data)
        assert all(a[1] <= b[0] for a, b in zip(gates, gates[1:]))
        assert gates[1][0] - gates[0][1] < 0.9  # the second had compiled meanwhile
        assert len({d["pid"] for d in data}) == 1 and w.jobs_done == 3
        assert w.timing_s > 2 and w.compile_s > 1

    def test_shutdown_waits_for_running_jobs_and_cancels_queued_ones(self, ex):
        futs = [ex.submit(_job(f"tail{i}", "sleep:2")) for i in range(3)]
        _wait(lambda: sum(1 for w in ex.workers() if w.job_id) == 2, what="two busy actors")
        ex.shutdown(wait=True)
        assert [f.result().data["status"] for f in futs[:2]] == ["ok", "ok"]
        assert futs[2].cancelled()
        assert all(w.state == "stopped" for w in ex.workers())
        assert not ray.is_initialized()
        with pytest.raises(ExecutorError, match="shut down"):
            ex.submit(_job("late", "sleep:0.1"))


# ------------------------------------------------------------------ an existing cluster

def test_an_existing_cluster_gets_the_orchestrators_code(tmp_path):
    """`ray start --head` (loopback only, token auth) stands in for a cluster; a fresh
    driver process joins it (Ray keeps one auth mode per process): the actor imports the
    shipped `evolve`/`evaluator` (the job's working_dir), not this checkout, and a real
    evaluation runs there."""
    cluster = LoopbackCluster(num_cpus=1)
    try:
        cluster.wait_up()
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "tests" / "ray_support.py"), cluster.address,
             str(tmp_path / "work"), str(tmp_path / "logs")],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
            env={**cli_env(), "RAY_AUTH_MODE": "token"})
    finally:
        cluster.stop()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT "):])
    assert out["shipped"] and out["capacity"] == 1
    res = out["result"]
    assert res["lost"] is None and res["error"] is None, res
    assert res["data"]["status"] == "ok" and res["data"]["score"] > 0
    ready = [ln for ln in out["log"].splitlines() if " ready: " in ln]
    code = ready[0].rsplit("code ", 1)[1]
    assert "runtime_resources" in code and not code.startswith(str(REPO_ROOT)), ready


# ------------------------------------------------------------------ end to end


@pytest.mark.slow  # ~1 min: a local Ray instance and 3 smoke evaluations
def test_evolve_start_with_the_ray_executor(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        evolve_cmd("start", "--target", "gqa", "--operator", "offline", "--executor", "ray",
                   "--max-candidates", "3", "--runs-dir", str(runs), "--name", "rayrun",
                   "--rng-seed", "5"),
        capture_output=True, text=True, env=cli_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = assert_consistent(runs / "rayrun")
    try:
        assert len(run.store.candidates()) == 3 and run.config.executor == "ray"
        workers = run.store.workers()
        assert [w["name"] for w in workers] == ["ray-actor-0"]
        assert workers[0]["state"] == "stopped" and workers[0]["jobs_done"] >= 3
    finally:
        run.close()
    # the actor kept a pre-started evaluator worker: later evaluations used it, and the
    # last one was stopped and its scratch removed when the run ended
    logs = [p.read_text(errors="replace") for p in (runs / "rayrun" / "logs").glob("*.log")
            if p.stem.isdigit()]
    used = sum(bool(re.search(r"pre-started: request received", t)) for t in logs)
    assert len(logs) >= 3 and used >= 2, f"pre-started workers used {used} times"
    scratch = runs / "rayrun" / "scratch"
    assert not list(scratch.glob("spares-*")), list(scratch.iterdir())
    assert not procs_under(runs / "rayrun")
    status = subprocess.run(evolve_cmd("status", str(runs / "rayrun")), capture_output=True,
                            text=True, env={**cli_env(), "COLUMNS": "200"}, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "ray-actor-0" in status.stdout and "ray executor" in status.stdout
    json.dumps(workers)  # plain data
