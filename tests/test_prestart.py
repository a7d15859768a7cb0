"""Pre-started evaluation workers (evaluator/prestart.py, evolve.jobs.SparePool) on the CPU:
real worker processes, real candidates (Triton interpreter, smoke suite)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fixture_run import cli_env, evolve_cmd, procs_under

from evaluator import EvalOptions, evaluate
from evaluator.prestart import IDLE_EXIT, Prestarted, PrestartUnsupported
from evolve.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
NAIVE = ROOT / "seeds" / "gqa_naive.py"
RECEIVED = re.compile(r"pre-started: request received \(pid (\d+)\)")


def _gone(h: Prestarted) -> None:
    """The handle's process has exited and both of its directories are removed."""
    assert h.proc is not None and h.proc.poll() is not None
    assert not h.scratch.exists() and not h.private.exists()
    _wait_for(lambda: not procs_under(h.scratch), timeout=30)  # the sandboxed child too


def _wait_for(pred, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_a_prestarted_worker_evaluates_like_a_fresh_one(tmp_path):
    fresh = evaluate(NAIVE, "gqa", "smoke", EvalOptions(log_path=tmp_path / "fresh.log"))
    h = Prestarted.start(None, True)
    assert (h.gpu, h.interpreter) == (None, True) and h.alive()
    _wait_for(lambda: "stage: init" in h.log_path.read_text())  # announced before any request
    log = tmp_path / "pre.log"
    res = evaluate(NAIVE, "gqa", "smoke", EvalOptions(prestarted=h, log_path=log))
    assert fresh.status == res.status == "ok", (fresh.failure, res.failure, res.log_tail)
    for k in ("checked", "passed"):
        assert res.validation[k] == fresh.validation[k] and res.validation[k] > 0
    assert [s.name for s in res.shapes] == [s.name for s in fresh.shapes]
    assert res.env["isolation"].split(" + ")[0] == fresh.env["isolation"].split(" + ")[0]
    text = log.read_text()
    assert text.index("stage: init") < RECEIVED.search(text).start() < text.index("stage: baselines")
    assert "pre-started" not in (tmp_path / "fresh.log").read_text()
    assert h.proc.returncode == 0 and h.used and not h.alive()  # it ran to the end: the evaluation
    _gone(h)


def test_the_handles_own_process_runs_the_evaluation(tmp_path):
    h = Prestarted.start(None, True, base=tmp_path / "base")
    assert h.scratch.parent == tmp_path / "base"
    _wait_for(lambda: "stage: init" in h.log_path.read_text())
    log = tmp_path / "pre.log"
    res = evaluate(NAIVE, "gqa", "smoke", EvalOptions(prestarted=h, log_path=log))
    assert res.status == "ok", res.failure
    # the evaluation's worker log is the one the handle's process has been writing since
    # its start (its `stage: init` came before the evaluation existed)
    assert RECEIVED.search(log.read_text())
    assert h.proc.returncode == 0
    _gone(h)
    assert list((tmp_path / "base").iterdir()) == []


@pytest.mark.parametrize("mode", ["landlock", "none"])
def test_no_prestart_without_a_pid_namespace(tmp_path, monkeypatch, mode):
    """Without its own pid namespace a candidate could reach the waiting spare's stdin
    through /proc: refused, and nothing is left behind."""
    monkeypatch.setenv("EVOLVE_SANDBOX", mode)
    with pytest.raises(PrestartUnsupported, match="pid-isolating"):
        Prestarted.start(None, True, base=tmp_path / "base")
    assert list((tmp_path / "base").iterdir()) == []


def test_a_dead_handle_falls_back_to_a_fresh_worker(tmp_path):
    h = Prestarted.start(None, True)
    os.killpg(h.proc.pid, signal.SIGKILL)
    h.proc.wait(timeout=30)
    log = tmp_path / "e.log"
    res = evaluate(NAIVE, "gqa", "smoke", EvalOptions(prestarted=h, log_path=log))
    assert res.status == "ok", (res.failure, res.log_tail)
    assert "stage: done" in log.read_text() and "pre-started" not in log.read_text()
    _gone(h)


def test_a_handle_for_another_gpu_or_with_a_scratch_dir_is_not_used_but_closed(tmp_path):
    other = Prestarted.start(7, True)  # evaluation: gpu None
    scratch_given = Prestarted.start(None, True)
    assert not other.usable(None, True) and scratch_given.usable(None, True)
    assert not scratch_given.usable(None, False)
    log = tmp_path / "e.log"
    res = evaluate(NAIVE, "gqa", "smoke", EvalOptions(prestarted=other, log_path=log))
    assert res.status == "ok" and "pre-started" not in log.read_text()
    assert other.proc.returncode != 0  # killed unused, never got a request
    _gone(other)
    res = evaluate(NAIVE, "gqa", "smoke", EvalOptions(prestarted=scratch_given, log_path=log,
                                                      scratch_dir=tmp_path / "s"))
    assert res.status == "ok" and "pre-started" not in log.read_text()
    _gone(scratch_given)
    left = {p.name for p in (tmp_path / "s").iterdir()}  # (the sandbox's empty cache dirs stay)
    assert not left & {"candidate", "out", "work", "request.json"}


def test_an_unused_handle_is_closed_when_the_static_check_rejects(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef attention(q, k, v, causal=False, sm_scale=None):\n"
                   "    os.system('true')\n    return q\n")
    h = Prestarted.start(None, True)
    res = evaluate(bad, "gqa", "smoke", EvalOptions(prestarted=h))
    assert res.status == "rejected" and res.failure.cls == "forbidden"
    _gone(h)


def test_an_idle_prestarted_worker_exits_quietly_when_stdin_closes():
    h = Prestarted.start(None, True)
    try:
        _wait_for(lambda: "stage: init" in h.log_path.read_text())
        h.proc.stdin.close()
        assert h.proc.wait(timeout=120) == IDLE_EXIT
        assert "Traceback" not in h.log_path.read_text()
    finally:
        h.close()
    _gone(h)


def test_options_and_config_fields():
    opts = EvalOptions(prestarted=object())
    assert "prestarted=" not in repr(opts)
    cfg = RunConfig(name="r", target="gqa", operator="offline", seed_file="s.py", suite="smoke",
                    rng_seed=1)
    assert cfg.prestart_workers is True
    d = cfg.to_dict()
    assert d["prestart_workers"] is True
    assert RunConfig.from_dict({**d, "prestart_workers": False}).prestart_workers is False
    d.pop("prestart_workers")  # a run.toml written before the field existed
    assert RunConfig.from_dict(d).prestart_workers is True


def test_run_job_consumes_the_pools_spare_and_starts_the_next_one(tmp_path):
    from evolve.executors import EvalJob
    from evolve.jobs import SparePool, run_job

    pool = SparePool(None, tmp_path / "spares")
    pool.refill()
    first = pool.spare
    assert first is not None and first.alive() and first.scratch.parent == tmp_path / "spares"
    stages: list[str] = []
    job = EvalJob("cand-1", "candidate", "gqa", "smoke", NAIVE.read_text(), timeout_s=300)
    res = run_job(job, None, tmp_path / "work", on_stage=stages.append, spares=pool)
    try:
        assert res.error is None and res.data["status"] == "ok", (res.error, res.log[-2000:])
        assert RECEIVED.search(res.log) and "confine" in stages
        _gone(first)
        nxt = pool.spare  # started at the evaluation's `confine` stage
        assert nxt is not None and nxt is not first and nxt.alive() and not nxt.used
        assert list((tmp_path / "work").iterdir()) == []
    finally:
        pool.close()
    _gone(nxt)
    assert not (tmp_path / "spares").exists()


_EXECUTOR = """
import sys
from pathlib import Path
from evolve.executors.local import LocalExecutor
ex = LocalExecutor([None], Path(sys.argv[1]), log_dir=Path(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()
ex.shutdown()
"""


def _start_executor(workdir: Path, tmp: Path, sandbox: str) -> tuple[subprocess.Popen, Path]:
    """A process holding a local executor (one interpreter slot) and the directory of its
    slot's spare; its temp dir (where private dirs go) is `tmp`."""
    import sys

    tmp.mkdir()
    env = {**cli_env(), "PYTHONPATH": str(ROOT), "EVOLVE_SANDBOX": sandbox, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-c", _EXECUTOR, str(workdir), str(tmp / "logs")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    assert b"ready" in proc.stdout.readline()
    _wait_for(lambda: any(procs_under(d) for d in workdir.glob("spares-local-cpu/evolve-spare-*")),
              timeout=60)
    (spare,) = workdir.glob("spares-local-cpu/evolve-spare-*")
    return proc, spare


@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
def test_a_slots_spare_dies_with_its_executor(tmp_path, how):
    """shutdown(): the slot kills its spare and removes its directories; SIGKILL of the
    orchestrator: bwrap's --die-with-parent, or without a wrapper the orphaned spare exits
    at stdin EOF once its imports are done (its dirs stay until `resume` cleans up)."""
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    proc, spare = _start_executor(work, tmp, "auto")
    assert any(p.name.startswith("evolve-check-") for p in tmp.iterdir())  # the spare's private dir
    if how == "shutdown":
        proc.stdin.write(b"\n")
        proc.stdin.flush()
    else:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    _wait_for(lambda: not procs_under(tmp_path), timeout=60)
    if how == "shutdown":
        assert proc.returncode == 0
        assert list(work.iterdir()) == [] and [p.name for p in tmp.iterdir()] == ["logs"]


@pytest.mark.slow  # ~30-60 s: 3 smoke evaluations through the loop and a local worker
def test_a_run_with_prestarted_workers_completes_and_leaves_nothing(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        evolve_cmd("start", "--target", "gqa", "--operator", "offline", "--max-candidates", "3",
                   "--runs-dir", str(runs), "--name", "pre", "--rng-seed", "5"),
        capture_output=True, text=True, env=cli_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = runs / "pre"
    assert "prestart_workers = true" in (run_dir / "run.toml").read_text()
    logs = [p.read_text(errors="replace") for p in (run_dir / "logs").glob("*.log")
            if p.stem.isdigit()]
    assert len(logs) >= 3
    assert sum(bool(RECEIVED.search(t)) for t in logs) >= 2, "pre-started workers were not used"
    worker_log = (run_dir / "logs" / "worker-local-cpu.log").read_text(errors="replace")
    assert "[spares]" not in worker_log, worker_log[-2000:]
    _wait_for(lambda: not procs_under(run_dir), timeout=30)  # no spare left running
    scratch = run_dir / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []


def test_the_pool_turns_itself_off_without_a_pid_namespace(tmp_path, monkeypatch, capsys):
    from evolve.jobs import SparePool

    monkeypatch.setenv("EVOLVE_SANDBOX", "landlock")
    pool = SparePool(None, tmp_path / "spares")
    pool.refill()
    pool.refill()
    assert pool.spare is None and pool.take() is None
    assert capsys.readouterr().out.count("[spares] off: pre-started workers need") == 1
    pool.close()
    assert not (tmp_path / "spares").exists()
