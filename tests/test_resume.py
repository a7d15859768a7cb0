"""Crash safety: Ctrl-C and SIGKILL in the middle of an evaluation, then `evolve resume`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from fixture_run import FIXTURE_CANDIDATES, cli_env, copy_fixture_run, evolve_cmd
from lineage_checks import assert_consistent

from evolve.run import RunHandle


def _descendants(pid: int) -> list[int]:
    """All live descendants of pid (the evaluator's worker runs in its own session)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _all_gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.5)
    return False


def _describe(pids: list[int]) -> list[str]:
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{p}: {cmd[:200]}")
        except OSError:
            pass
    return out


def _start_resume(run_dir: Path, budget: int) -> subprocess.Popen:
    return subprocess.Popen(evolve_cmd("resume", str(run_dir), "--max-candidates", str(budget)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cli_env(), start_new_session=True)


def _recorded(run_dir: Path) -> set[int]:
    db = sqlite3.connect(f"file:{run_dir / 'lineage.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0] for row in db.execute("select id from candidates")}
    finally:
        db.close()


def _wait_for_evaluation(proc: subprocess.Popen, run_dir: Path, timeout: float = 900) -> int:
    """Wait until a candidate is committed, has no DB row yet, and its evaluator worker is
    running; return its id. The caller signals at once: an evaluation lasts seconds even
    on a quiet machine (worker start, torch import, interpreter), never milliseconds."""
    refs = run_dir / "kernels" / ".git" / "refs" / "candidates"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"loop ended early:\n{proc.stdout.read()}"
        committed = {int(p.name) for p in refs.iterdir()} if refs.exists() else set()
        pending = committed - _recorded(run_dir)
        if pending and _descendants(proc.pid):
            time.sleep(0.3)
            return max(pending)
        time.sleep(0.2)
    raise AssertionError("no candidate started evaluating")


def test_ctrl_c_stops_cleanly_and_leaves_an_orphan(fixture_run, tmp_path_factory):
    run_dir = copy_fixture_run(tmp_path_factory.getbasetemp(), "sigint")
    proc = _start_resume(run_dir, FIXTURE_CANDIDATES + 2)
    cid = _wait_for_evaluation(proc, run_dir)
    workers = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "evolve resume" in out
    assert _all_gone(workers), f"evaluator processes left running: {_describe(workers)}"
    run = RunHandle.open(run_dir)
    assert run.store.run().status == "stopped"
    assert run.effective_status() == "stopped"
    # the cut-short candidate is a commit without a row: resume will evaluate it again
    assert cid in run.repo.candidate_refs()
    assert run.store.get_candidate(cid) is None
    assert run.store.events()[-1].kind == "stop"
    assert not (run_dir / "run.lock").exists()


def test_sigint_to_a_background_loop_stops_it(fixture_run, tmp_path_factory):
    """`evolve start ... &` in a script starts with SIGINT ignored (bash does that to
    background jobs); `kill -INT <pid>` to the loop alone must still stop it cleanly."""
    run_dir = copy_fixture_run(tmp_path_factory.getbasetemp(), "bg-sigint")
    proc = subprocess.Popen(
        evolve_cmd("resume", str(run_dir), "--max-candidates", str(FIXTURE_CANDIDATES + 2)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    _wait_for_evaluation(proc, run_dir)
    workers = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGINT)  # the loop only, not its process group
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert _all_gone(workers), f"evaluator processes left running: {_describe(workers)}"
    assert RunHandle.open(run_dir).store.run().status == "stopped"


def test_sigkill_mid_evaluation_then_resume_loses_nothing(fixture_run, tmp_path_factory):
    run_dir = copy_fixture_run(tmp_path_factory.getbasetemp(), "sigkill")
    target = FIXTURE_CANDIDATES + 3
    proc = _start_resume(run_dir, target)
    _wait_for_evaluation(proc, run_dir)

    # a second loop on the same run is refused while the first one lives
    second = subprocess.run(evolve_cmd("resume", str(run_dir)), capture_output=True, text=True,
                            env=cli_env(), timeout=120)
    assert second.returncode == 2 and "in use" in second.stderr

    cid = _wait_for_evaluation(proc, run_dir)   # the loop may have moved on meanwhile
    victims = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)

    run = RunHandle.open(run_dir)
    assert run.store.run().status == "running"  # as the killed loop left it
    assert run.effective_status() == "interrupted"  # ... but nobody is running it
    assert cid in run.repo.candidate_refs()
    assert run.store.get_candidate(cid) is None
    orphan_source = run.repo.source_at(cid)
    run.close()

    status = subprocess.run(evolve_cmd("status", str(run_dir)), capture_output=True, text=True,
                            env=cli_env(), timeout=120)
    assert status.returncode == 0 and "interrupted" in status.stdout

    done = subprocess.run(evolve_cmd("resume", str(run_dir)), capture_output=True, text=True,
                          env=cli_env(), timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr
    run = assert_consistent(run_dir)
    cands = run.store.candidates()
    assert len(cands) == target
    recovered = run.store.events("orphan_recovered")
    assert [e.candidate_id for e in recovered] == [cid]
    assert run.repo.source_at(cid) == orphan_source
    kinds = [e.kind for e in run.store.events()]
    assert "warning" in kinds  # "run was found dead (interrupted)"
    assert run.store.run().status == "stopped"
