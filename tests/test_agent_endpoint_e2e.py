"""Agent runs against the scripted server through the real CLI (`evolve resume` of a run
whose seed is recorded, so no seed evaluation is waited for): each `--api`, the auto
switch remembered by the run, a vLLM-style 400 that ends the run with exit code 1, and
spend that survives kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolve.run import RunHandle
from tests.agent_support import SECRET, make_run
from tests.llm_server import ScriptedLLM, has, http_error, slow, tool_call

# rejected by the static check at once (no interpreter run): a cheap agent candidate
KERNEL = "import os\n\n\ndef attention(q, k, v, *, causal=False, sm_scale=None):\n" \
         "    return q.clone()\n"
VLLM_400 = ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
            'to be set')


def _script(tag: str = "") -> list:
    source = KERNEL + (f"# {tag}\n" if tag else "")  # another source: not a duplicate
    return [tool_call("write_kernel", {"source": source}, usage=(3000, 200, 1000)),
            tool_call("submit", {"hypothesis": "copy q"}, check=has("written:"),
                      usage=(3300, 20, 3000))]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_API_KEY=SECRET, EVOLVE_AGENT_BACKOFF_S="0.01", NO_COLOR="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def _resume_cmd(root: Path, *flags: str) -> list[str]:
    # a script that runs out answers 500: give up on it soon
    return [sys.executable, "-m", "evolve", "resume", str(root), "--max-wait-min", "0.2",
            *flags]


def _resume(root: Path, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_resume_cmd(root, *flags), cwd=root.parent, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _new_run(tmp: Path, url: str, **kw) -> Path:
    """A run whose seed is recorded ok with a score (as if evaluated): parents to select."""
    run = make_run(tmp, url, model=kw.pop("model", "gpt-5.4"), **kw)
    root = run.paths.root
    run.close()
    with sqlite3.connect(root / "lineage.db") as conn:
        conn.execute("UPDATE candidates SET score = 1.0 WHERE id = 0")
    return root


@pytest.mark.parametrize("api", ["chat", "responses", "auto"])
def test_each_api_records_an_agent_candidate(tmp_path, api):
    with ScriptedLLM(_script()) as srv:
        root = _new_run(tmp_path, srv.base_url)
        proc = _resume(root, "--max-candidates", "2", "--api", api)
        srv.assert_clean()
        paths = [r["path"].rsplit("/", 1)[-1] for r in srv.requests]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert paths == ["responses" if api == "responses" else "completions"] * 2
    if api == "responses":
        first, second = srv.responses_requests()
        assert first["store"] is False and "previous_response_id" not in second
        assert second["input"][-1]["type"] == "function_call_output"
    run = RunHandle.open(root)
    try:
        c = run.store.get_candidate(1)
        assert c is not None and c.operator == "agent" and c.status == "rejected"
        s = {x.id: x for x in run.store.sessions()}[c.session_id]
        assert s.outcome == "submitted" and (s.tokens_in, s.tokens_out) == (6300, 220)
        # gpt-5.4: 2300 uncached at $2.50, 4000 cached at $0.25, 220 out at $15 (per M)
        assert s.cost_usd == pytest.approx((2300 * 2.5 + 4000 * 0.25 + 220 * 15) / 1e6)
        assert run.store.totals()["cost_usd"] == pytest.approx(s.cost_usd)
    finally:
        run.close()


def test_auto_switches_to_responses_and_the_run_remembers(tmp_path):
    hint = ("Function tools with reasoning_effort are not supported for gpt-5.4 in "
            "/v1/chat/completions. Please use /v1/responses instead.")
    with ScriptedLLM([http_error(400, message=hint)] + _script() + _script("2")) as srv:
        root = _new_run(tmp_path, srv.base_url)
        proc = _resume(root, "--max-candidates", "2")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        assert "switching from chat to responses" in out
        proc2 = _resume(root, "--max-candidates", "3")
        assert proc2.returncode == 0, (proc2.stdout + proc2.stderr)[-3000:]
        paths = [r["path"].rsplit("/", 1)[-1] for r in srv.requests]
    assert paths == ["completions"] + ["responses"] * 4  # the second run starts there
    run = RunHandle.open(root)
    try:
        assert [e.kind for e in run.store.events("api_switch")] == ["api_switch"]
        assert [c.operator for c in run.store.candidates()] == ["seed", "agent", "agent"]
    finally:
        run.close()


def test_vllm_400_ends_the_run_with_exit_1_and_the_servers_words(tmp_path):
    with ScriptedLLM([http_error(400, message=VLLM_400, vllm=True)] * 6) as srv:
        root = _new_run(tmp_path, srv.base_url, model="Qwen/Qwen3-Coder-30B")
        t0 = time.monotonic()
        proc = _resume(root, "--max-candidates", "5", timeout=120)
        took = time.monotonic() - t0
        n_requests = len(srv.requests)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert took < 60 and n_requests == 1  # at once: no second session, no retry
    assert VLLM_400 in out and "--enable-auto-tool-choice --tool-call-parser" in out
    run = RunHandle.open(root)
    try:
        assert run.store.run().status == "finished"
        assert [s.outcome for s in run.store.sessions()] == ["error"]
    finally:
        run.close()


def test_a_fatal_400_keeps_the_sessions_verified_work_for_resume(tmp_path):
    from tests.agent_support import config_edit, seed_source
    old, new = config_edit(seed_source())
    script = [tool_call("edit_kernel", {"old": old, "new": new}),
              tool_call("evaluate", {}, check=has("edited at line")),
              http_error(400, message=VLLM_400, vllm=True)]
    with ScriptedLLM(script) as srv:
        root = _new_run(tmp_path, srv.base_url, model="Qwen/Qwen3-Coder-30B")
        proc = _resume(root, "--max-candidates", "3")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and VLLM_400 in out, out[-3000:]
    run = RunHandle.open(root, writable=False)
    try:
        assert run.store.get_candidate(1) is None and 1 in run.repo.candidate_refs()
        assert any("evolve resume` evaluates it" in e.message for e in run.store.events())
    finally:
        run.close()
    with ScriptedLLM([tool_call("give_up", {"reason": "enough"})] * 3) as srv:
        run = RunHandle.open(root)
        run.config.agent.base_url = srv.base_url
        run.save_config()
        run.close()
        proc = _resume(root, "--max-candidates", "2")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run = RunHandle.open(root, writable=False)
    try:
        c = run.store.get_candidate(1)
        assert c is not None and c.status == "ok" and new in run.repo.source_at(1)
        assert c.unsubmitted is not None and c.unsubmitted.startswith("error: ")
    finally:
        run.close()


def test_spend_survives_kill_and_counts_on_resume(tmp_path):
    with ScriptedLLM([tool_call("read_kernel", {}, usage=(400_000, 1000)),
                      slow(tool_call("give_up", {"reason": "x"}), 120)]) as srv:
        root = _new_run(tmp_path, srv.base_url, max_usd=50.0)
        proc = subprocess.Popen(_resume_cmd(root, "--max-candidates", "3"), cwd=tmp_path,
                                env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            cost = _wait_for_spend(root / "lineage.db", proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its evaluator workers
            proc.wait()
    expected = (400_000 * 2.5 + 1000 * 15) / 1e6
    assert cost == pytest.approx(expected)
    run = RunHandle.open(root)
    try:
        assert [s.outcome for s in run.store.sessions()] == ["open"]
        assert run.store.totals()["cost_usd"] == pytest.approx(expected)
    finally:
        run.close()
    # the next invocation's budget counts the killed session's spend: nothing is asked
    with ScriptedLLM([]) as srv2:
        run = RunHandle.open(root, writable=True)
        run.config.agent.base_url = srv2.base_url
        run.save_config()
        run.close()
        proc = _resume(root, "--max-usd", "0.5")
        assert srv2.requests == []
    assert proc.returncode == 0 and "cost budget reached" in proc.stdout


def _wait_for_spend(db: Path, proc: subprocess.Popen, timeout: float = 90) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its spend was seen"
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                row = conn.execute("SELECT SUM(cost_usd) FROM sessions").fetchone()
            if row and row[0]:
                return float(row[0])
        except sqlite3.OperationalError:
            pass  # the table is created by the first session
        time.sleep(0.2)
    raise AssertionError("no spend recorded while the session was open")


def test_a_fatal_400_after_the_time_budget_ran_out_still_fails_the_run(tmp_path):
    # the time budget ends while the session waits on the model; the endpoint then
    # refuses the request: the run must still end with exit code 1 and the server's words
    with ScriptedLLM([slow(http_error(400, message=VLLM_400, vllm=True), 4.0)]) as srv:
        root = _new_run(tmp_path, srv.base_url, model="Qwen/Qwen3-Coder-30B")
        proc = _resume(root, "--max-candidates", "5", "--max-minutes", "0.02", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and VLLM_400 in out, out[-3000:]
