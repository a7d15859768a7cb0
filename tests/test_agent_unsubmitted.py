"""Verified work is never lost: sessions that evaluate ok and then end without submit
(answers without tools, a budget, an endpoint error) hand in their best evaluated state,
marked unsubmitted. Real openai client over HTTP, real evaluator (CPU, smoke suite; one
evaluation per distinct source, shared by the tests of this module)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from evolve.agent import AgentOperator
from tests.agent_support import (SECRET, config_edit, make_ctx, make_run, real_evaluate,
                                 seed_source)
from tests.llm_server import ScriptedLLM, has, http_error, text, tool_call

DONE = "Done: BLOCK_N is now 32 and the evaluation passed. That's my final answer."


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("EVOLVE_AGENT_BACKOFF_S", "0.01")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def evaluate(tmp_path_factory):
    """The real evaluator, run once per distinct source (the same text, the same verdict)."""
    run = make_run(tmp_path_factory.mktemp("evals"), "http://127.0.0.1:9/v1")
    probe, seen = real_evaluate(run), {}

    def cached(source: str, suite: str) -> Any:
        if (source, suite) not in seen:
            seen[(source, suite)] = probe(source, suite)
        return seen[(source, suite)]
    yield cached
    run.close()


def _edit_and_evaluate() -> list:
    old, new = config_edit(seed_source())
    return [tool_call("edit_kernel", {"old": old, "new": new}),
            tool_call("evaluate", {}, check=has("edited at line"))]


def _nudge_check(n: int, limit: int):
    def check(req: dict[str, Any]) -> None:
        last = req["messages"][-1]
        assert last["role"] == "user" and f"(nudge {n} of {limit})" in last["content"], last
        assert "submit(hypothesis)" in last["content"]
    return check


def test_text_answers_after_an_ok_evaluation_keep_the_work(tmp_path, evaluate):
    old, new = config_edit(seed_source())
    with ScriptedLLM([
        *_edit_and_evaluate(),
        text(DONE, check=has("status: ok", "not a performance number")),
        text(DONE, check=_nudge_check(1, 2)),
        text(DONE, check=_nudge_check(2, 2)),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url, max_nudges=2)
        prop = AgentOperator(run).propose(make_ctx(run, evaluate))
        srv.assert_clean()
        assert srv.remaining == 0
    assert prop is not None and new in prop.source and old not in prop.source
    s = run.store.sessions()[0]
    assert s.outcome == "no_tools" and prop.session_id == s.id
    assert prop.unsubmitted is not None and prop.unsubmitted.startswith("no_tools: ")
    assert "3 time(s) (nudge limit 2)" in prop.unsubmitted
    assert prop.hypothesis.startswith("(unsubmitted: the session ended no_tools before "
                                      "submit) the model's last note: Done: BLOCK_N")
    agent = prop.changes["agent"]
    assert agent["verified"] is True and agent["evaluations"] == ["ok"]
    assert (prop.tokens_in, prop.cost_usd) == (s.tokens_in, s.cost_usd)
    warn = [e for e in run.store.events() if e.kind == "warning"]
    assert len(warn) == 1 and "without submit" in warn[0].message


def test_tool_call_budget_keeps_the_last_ok_state_not_the_broken_copy(tmp_path, evaluate):
    old, new = config_edit(seed_source())
    with ScriptedLLM([
        *_edit_and_evaluate(),
        tool_call("edit_kernel", {"old": new, "new": new + " BROKEN("},
                  check=has("status: ok")),
        tool_call("read_kernel", {}),
        tool_call("give_up", {"reason": "never reached"}),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url, max_tool_calls=3)
        prop = AgentOperator(run).propose(make_ctx(run, evaluate))
        srv.assert_clean()
    s = run.store.sessions()[0]
    assert s.outcome == "budget" and "tool-call budget" in s.reason
    assert prop is not None and "BROKEN" not in prop.source and new in prop.source
    assert prop.unsubmitted.startswith("budget: session tool-call budget used up")
    assert prop.changes["agent"]["verified"] is True


def test_endpoint_error_after_an_ok_evaluation_keeps_the_work(tmp_path, evaluate):
    with ScriptedLLM([*_edit_and_evaluate(), http_error(500), http_error(500)]) as srv:
        run = make_run(tmp_path, srv.base_url, max_retries=1)
        op = AgentOperator(run)
        prop = op.propose(make_ctx(run, evaluate))
    assert prop is not None and prop.unsubmitted.startswith("error: HTTP 500")
    assert [e.kind for e in run.store.events()] == ["operator_error", "warning"]


def test_a_fatal_endpoint_error_after_an_ok_evaluation_carries_the_work(tmp_path, evaluate):
    """A 4xx that stops the run still hands the verified state to the loop (`kept`), which
    commits it for the next resume to evaluate (tests/test_agent_endpoint_e2e.py)."""
    from evolve.agent.endpoint_errors import EndpointFatal
    from evolve.proposers import propose

    old, new = config_edit(seed_source())
    with ScriptedLLM([*_edit_and_evaluate(),
                      http_error(400, message="Invalid value for 'tools'")]) as srv:
        run = make_run(tmp_path, srv.base_url)
        p = propose(AgentOperator(run), make_ctx(run, evaluate))
    assert p.fatal and "Invalid value for 'tools'" in p.error
    assert p.child is not None and new in p.child.source and old not in p.child.source
    assert p.child.unsubmitted.startswith("error: ") and p.child.changes["agent"]["verified"]
    assert [s.outcome for s in run.store.sessions()] == ["error"]
    assert isinstance(p.child, object) and EndpointFatal.__name__ in p.trace


def test_give_up_or_only_the_parent_evaluated_hands_in_nothing(tmp_path, evaluate):
    with ScriptedLLM([*_edit_and_evaluate(),
                      tool_call("give_up", {"reason": "not worth it"})]) as srv:
        run = make_run(tmp_path / "a", srv.base_url)
        op = AgentOperator(run)
        assert op.propose(make_ctx(run, evaluate)) is None
        assert "ended gave_up" in op.last_reason
    with ScriptedLLM([tool_call("evaluate", {}), text("done"), text("done")]) as srv:
        run = make_run(tmp_path / "b", srv.base_url, max_nudges=1)
        op = AgentOperator(run)
        assert op.propose(make_ctx(run, evaluate)) is None  # the parent is nothing new
        srv.assert_clean()
    assert run.store.sessions()[0].outcome == "no_tools"


def test_a_revert_to_the_parent_keeps_the_edited_ok_state(tmp_path, evaluate):
    old, new = config_edit(seed_source())
    with ScriptedLLM([*_edit_and_evaluate(),
                      tool_call("edit_kernel", {"old": new, "new": old}),
                      tool_call("evaluate", {}),
                      text("done"), text("done")]) as srv:
        run = make_run(tmp_path, srv.base_url, max_nudges=1)
        prop = AgentOperator(run).propose(make_ctx(run, evaluate))
        srv.assert_clean()
    assert prop is not None and new in prop.source
    assert json.loads(prop.changes_json)["agent"]["evaluations"] == ["ok", "ok"]


def test_the_dashboard_candidate_view_says_unsubmitted(tmp_path, monkeypatch):
    from pathlib import Path

    import sqlite_utils
    from streamlit.testing.v1 import AppTest

    from tests.dashboard_fixture import make_synthetic_run
    run_dir = make_synthetic_run(tmp_path, name="cpu-run")
    db = sqlite_utils.Database(run_dir / "lineage.db")
    changes = {"agent": {"unsubmitted": "budget: session tool-call budget used up (40 of 40)"}}
    db.table("candidates").update(5, {"changes_json": json.dumps(changes)})
    db.close()
    monkeypatch.setenv("EVOLVE_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"),
                           default_timeout=60)
    for k, v in {"run": "cpu-run", "view": "candidate", "candidate": "5"}.items():
        at.query_params[k] = v
    at.run()
    warning = [w.value for w in at.warning if "unsubmitted" in w.value]
    assert warning and "never called submit" in warning[0]
    assert "budget: session tool-call budget used up (40 of 40)" in warning[0]
