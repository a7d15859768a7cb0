"""Agent sessions that run the real evaluator (CPU interpreter, smoke suite)."""

from __future__ import annotations

import pytest

from evolve.agent import AgentOperator
from tests.agent_support import SECRET, config_edit, make_ctx, make_run, real_evaluate, seed_source
from tests.llm_server import ScriptedLLM, has, tool_call


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("EVOLVE_AGENT_BACKOFF_S", "0.01")


def test_repair_session_reads_edits_evaluates_fixes_and_submits(tmp_path):
    """First evaluation fails (syntax), the agent sees the class and message, repairs,
    evaluates again (ok), critiques with a diff and submits."""
    src = seed_source()
    old, new = config_edit(src)
    broken = new.replace(",", "", 1) + "\n    BROKEN ="  # a syntax error the agent caused
    with ScriptedLLM([
        tool_call("read_kernel", {}),
        tool_call("edit_kernel", {"old": old, "new": broken}, check=has("def attention")),
        tool_call("evaluate", {"suite": "smoke"}, check=has("warning: the working copy has a "
                                                             "syntax error")),
        tool_call("edit_kernel", {"old": broken, "new": new},
                  check=has("status: rejected", "failure: syntax", "5 evaluations left")),
        tool_call("evaluate", {}, check=has("edited at line")),
        tool_call("diff", {"a": 0, "b": "working"},
                  check=has("status: ok", "validation:", "S=64", "4 evaluations left")),
        tool_call("submit", {"hypothesis": "BLOCK_N 64->32 for D64 non-causal: more CTAs "
                                           "per SM; expect a small gain on short sequences"},
                  check=has('-    "D64_NC": {"BLOCK_M": 64, "BLOCK_N": 64,',
                            '+    "D64_NC": {"BLOCK_M": 64, "BLOCK_N": 32,')),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url)
        prop = AgentOperator(run).propose(make_ctx(run, real_evaluate(run)))
        srv.assert_clean()
    assert prop is not None and new in prop.source
    assert prop.changes["agent"]["evaluations"] == ["rejected:syntax", "ok"]
    assert prop.changes["agent"]["verified"] is True
    s = run.store.sessions()[0]
    assert (s.outcome, s.evaluations, s.tool_calls) == ("submitted", 2, 7)
    evals = [st for st in run.store.agent_steps(s.id) if st.tool == "evaluate"]
    assert "failure: syntax" in evals[0].result_summary
    assert evals[1].result_summary.startswith("status: ok") and evals[1].latency_s > 0.5


def test_evaluation_budget_is_enforced_without_running(tmp_path):
    def must_not_run(source, suite):
        raise AssertionError("the evaluation budget is 0")
    with ScriptedLLM([
        tool_call("evaluate", {}),
        tool_call("give_up", {"reason": "cannot verify"}, check=has("evaluation budget used up")),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url, max_evaluations=0)
        assert AgentOperator(run).propose(make_ctx(run, must_not_run)) is None
        srv.assert_clean()
