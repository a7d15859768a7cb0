"""Agent sessions against the scripted server (real openai client, real HTTP), with a
real run directory (SQLite store + git). No evaluations here: see test_agent_eval.py."""

from __future__ import annotations

import json

import pytest

from evolve.agent import AgentOperator
from evolve.operators.base import OperatorError
from evolve.records import Candidate, sha256_text
from tests.agent_support import SECRET, config_edit, make_ctx, make_run, seed_source
from tests.llm_server import (ScriptedLLM, dynamic, has, http_error, multi_call, text,
                              tool_call, tool_calls_message)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("EVOLVE_AGENT_BACKOFF_S", "0.01")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_edit_and_submit_records_transcript_and_tokens(tmp_path):
    old, new = config_edit(seed_source())
    with ScriptedLLM([
        tool_call("lineage", {"view": "top", "n": 3}, content="Let me look around.",
                  usage=(1500, 40)),
        tool_call("read_kernel", {}, check=has("#0 [best] ok"), usage=(1800, 20)),
        tool_call("edit_kernel", {"old": old, "new": new}, check=has("def attention"),
                  usage=(6000, 60)),
        tool_call("diff", {"a": 0, "b": "working"}, check=has("edited at line"),
                  usage=(6100, 20)),
        tool_call("submit", {"hypothesis": "BLOCK_N 64->32 for D64: smaller tiles, "
                                           "expect fewer registers and more occupancy"},
                  check=has('+    "D64_NC": {"BLOCK_M": 64, "BLOCK_N": 32,'), usage=(6200, 30)),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url, model="gpt-4.1-mini")
        prop = AgentOperator(run).propose(make_ctx(run))
        srv.assert_clean()
    assert prop is not None and prop.operator == "agent" and prop.parent_id == 0
    assert new in prop.source and old not in prop.source
    assert prop.hypothesis.startswith("BLOCK_N 64->32")
    assert (prop.tokens_in, prop.tokens_out) == (21600, 170)
    assert prop.cost_usd == pytest.approx((21600 * 0.40 + 170 * 1.60) / 1e6, rel=1e-6)
    assert prop.changes["agent"]["edits"] == 1 and prop.changes["agent"]["verified"] is False
    sess = run.store.sessions()
    assert len(sess) == 1 and sess[0].id == prop.session_id
    s = sess[0]
    assert (s.outcome, s.tool_calls, s.evaluations) == ("submitted", 5, 0)
    assert (s.tokens_in, s.tokens_out, s.model) == (21600, 170, "gpt-4.1-mini")
    steps = run.store.agent_steps(s.id)
    assert [st.step for st in steps] == list(range(len(steps)))
    assert steps[0].role == "user" and "Session brief" in steps[0].result_summary
    tools = [st.tool for st in steps if st.role == "tool"]
    assert tools == ["lineage", "read_kernel", "edit_kernel", "diff", "submit"]
    assistant = [st for st in steps if st.role == "assistant"]
    assert [a.tokens_in for a in assistant] == [1500, 1800, 6000, 6100, 6200]
    assert assistant[0].result_summary == "Let me look around."
    assert all(a.latency_s > 0 for a in assistant)
    edit = next(st for st in steps if st.tool == "edit_kernel")
    assert json.loads(edit.arguments_json) == {"old": old, "new": new}
    # the system prompt and brief the model got: contract, rules, parent source, budgets
    first = srv.chat_requests()[0]["messages"]
    assert first[0]["role"] == "system" and "try/except" in first[0]["content"]
    assert "interpreter smoke suite" in first[0]["content"]
    assert "def attention" in first[1]["content"] and "40 tool calls" in first[1]["content"]


def test_invalid_arguments_and_unknown_tools_go_back_to_the_model(tmp_path):
    with ScriptedLLM([
        tool_call("lineage", {"view": "best"}),
        tool_call("edit_kernel", '{"old": "x", "new": ', check=has("must be one of")),
        tool_call("run_shell", {"cmd": "ls"}, check=has("not valid JSON")),
        tool_call("edit_kernel", {"old": "no such text", "new": "y"},
                  check=has("unknown tool 'run_shell'")),
        tool_call("submit", {"hypothesis": "nothing"}, check=has("was not found")),
        tool_call("show_candidate", {"id": 99}, check=has("identical to the parent")),
        tool_call("give_up", {"reason": "no idea worth trying"}, check=has("no candidate #99")),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url)
        prop = AgentOperator(run).propose(make_ctx(run))
        srv.assert_clean()
    assert prop is None
    s = run.store.sessions()[0]
    assert (s.outcome, s.reason, s.tool_calls) == ("gave_up", "no idea worth trying", 7)
    errors = [st for st in run.store.agent_steps(s.id)
              if st.role == "tool" and st.result_summary.startswith("error:")]
    assert len(errors) == 6
    raw = next(st for st in errors if "not valid JSON" in st.result_summary)
    assert json.loads(raw.arguments_json) == {"raw": '{"old": "x", "new": '}


def test_500_then_success_within_a_session(tmp_path):
    old, new = config_edit(seed_source())
    with ScriptedLLM([
        http_error(500),
        tool_call("edit_kernel", {"old": old, "new": new}),
        http_error(502),
        http_error(429, retry_after=0.01),
        tool_call("submit", {"hypothesis": "smaller BLOCK_N"}),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url)
        prop = AgentOperator(run).propose(make_ctx(run))
    assert prop is not None and len(srv.chat_requests()) == 5
    assistant = [st for st in run.store.agent_steps(prop.session_id) if st.role == "assistant"]
    assert [json.loads(a.arguments_json)["attempts"] for a in assistant] == [2, 3]


def test_endpoint_failure_ends_session_as_error(tmp_path):
    with ScriptedLLM([http_error(500)] * 3) as srv:
        run = make_run(tmp_path, srv.base_url, max_retries=2)
        op = AgentOperator(run)
        assert op.propose(make_ctx(run)) is None
    s = run.store.sessions()[0]
    assert s.outcome == "error" and "500" in s.reason
    assert [e.kind for e in run.store.events()] == ["operator_error"]


def _nudged(n: int, limit: int):
    def check(req):
        last = req["messages"][-1]
        assert last["role"] == "user" and "without calling a tool" in last["content"]
        assert f"(nudge {n} of {limit})" in last["content"]
        assert sum(1 for m in req["messages"] if "(nudge " in str(m.get("content"))) == n
    return check


def test_each_text_answer_is_nudged_up_to_the_limit(tmp_path):
    with ScriptedLLM([
        text("I think we should make the kernel faster."),
        text("Yes, definitely faster.", check=_nudged(1, 3)),
        text("Faster still.", check=_nudged(2, 3)),
        text("Done.", check=_nudged(3, 3)),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url, max_nudges=3)
        assert AgentOperator(run).propose(make_ctx(run)) is None
        srv.assert_clean()
        assert srv.remaining == 0
    s = run.store.sessions()[0]
    assert s.outcome == "no_tools" and s.tool_calls == 0
    assert s.reason == "the model answered without calling a tool 4 time(s) (nudge limit 3)"
    nudges = [st for st in run.store.agent_steps(s.id) if st.role == "user" and st.step > 0]
    assert [json.loads(st.arguments_json) for st in nudges] == [{"nudge": i} for i in (1, 2, 3)]


def test_nudges_between_tool_calls_then_recovery(tmp_path):
    with ScriptedLLM([text("thinking..."), tool_call("lineage", {"view": "top"}),
                      text("still thinking", check=has("top 1 candidates")),
                      tool_call("give_up", {"reason": "done"}, check=_nudged(2, 2))]) as srv:
        run = make_run(tmp_path, srv.base_url, max_nudges=2)
        AgentOperator(run).propose(make_ctx(run))
        srv.assert_clean()
    assert run.store.sessions()[0].outcome == "gave_up"


def test_tool_call_budget_stops_the_session(tmp_path):
    with ScriptedLLM([tool_call("read_kernel", {}),
                      multi_call([("lineage", {"view": "recent"}), ("read_kernel", {})],
                                 check=has("[budget: 1 tool call(s) left")),
                      tool_call("give_up", {"reason": "never reached"})]) as srv:
        run = make_run(tmp_path, srv.base_url, max_tool_calls=2)
        assert AgentOperator(run).propose(make_ctx(run)) is None
        srv.assert_clean()
        assert srv.remaining == 1
    s = run.store.sessions()[0]
    assert s.outcome == "budget" and s.tool_calls == 2 and "tool-call budget" in s.reason


def test_token_budget_stops_the_session(tmp_path):
    with ScriptedLLM([tool_call("read_kernel", {}, usage=(9000, 500)),
                      tool_call("read_kernel", {}, usage=(9800, 500)),
                      tool_call("give_up", {"reason": "never reached"})]) as srv:
        run = make_run(tmp_path, srv.base_url, max_tokens=19000)
        assert AgentOperator(run).propose(make_ctx(run)) is None
        assert srv.remaining == 1
    s = run.store.sessions()[0]
    assert s.outcome == "budget" and s.tokens_in + s.tokens_out == 19800


def test_run_usd_budget_stops_and_blocks_next_sessions(tmp_path):
    # gpt-4.1: $2 / Mtok in. 300k prompt tokens = $0.60 > max_usd 0.5 after one response.
    with ScriptedLLM([tool_call("read_kernel", {}, usage=(300_000, 100)),
                      tool_call("give_up", {"reason": "never reached"})]) as srv:
        run = make_run(tmp_path, srv.base_url, model="gpt-4.1", max_usd=0.5, max_tokens=10**7)
        op = AgentOperator(run)
        assert op.propose(make_ctx(run)) is None
        s = run.store.sessions()[0]
        assert s.outcome == "budget" and "run budget" in s.reason
        assert s.cost_usd == pytest.approx(0.6008, abs=1e-6) and op.exhausted
        # the next variation does not even start a session
        assert op.propose(make_ctx(run)) is None
        assert len(srv.chat_requests()) == 1 and len(run.store.sessions()) == 1


def test_unpriced_model_counts_tokens_only(tmp_path):
    with ScriptedLLM([tool_call("read_kernel", {}, usage=(5_000_000, 100)),
                      tool_call("give_up", {"reason": "ok"})]) as srv:
        run = make_run(tmp_path, srv.base_url, model="local-llama", max_tokens=10**8)
        AgentOperator(run).propose(make_ctx(run))
    s = run.store.sessions()[0]
    assert s.outcome == "gave_up" and s.cost_usd == 0 and s.tokens_in == 5_001_000


def test_supervisor_note_after_stall(tmp_path):
    with ScriptedLLM([
        tool_call("give_up", {"reason": "stop"},
                  check=lambda r: _assert_plateau(r["messages"][1]["content"])),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url, stall_limit=2)
        src = seed_source()
        for cid, hyp in ((1, "unroll the KV loop twice"), (2, "BLOCK_M 256")):
            s2 = src + f"# variant {cid}\n"
            sha = run.repo.commit_candidate(cid, s2, [run.repo.candidate_refs()[0]], "c")
            run.store.add_candidate(Candidate(
                id=cid, parent_id=0, parent2_id=None, operator="agent", commit_sha=sha,
                source_sha256=sha256_text(s2), status="rejected",
                score=None, failure_class="compile", failure_message="out of shared memory",
                hypothesis=hyp))
        AgentOperator(run).propose(make_ctx(run, brief={"focus": "long sequences"}))
        srv.assert_clean()


def _assert_plateau(brief):
    assert "plateau" in brief and "2 variations in a row" in brief
    assert "unroll the KV loop twice" in brief and "rejected compile" in brief
    assert "fa2-online-softmax" in brief  # knowledge nobody has read yet
    assert "focus: long sequences" in brief


def test_bad_prompt_dir_is_a_clear_operator_error(tmp_path):
    run = make_run(tmp_path, "http://127.0.0.1:9/v1", prompts_dir=tmp_path / "nope")
    with pytest.raises(OperatorError, match="prompts directory .* does not exist"):
        AgentOperator(run)


def test_supervisor_points_only_at_unread_knowledge(tmp_path):
    def brief_check(req):
        brief = req["messages"][1]["content"]
        assert "1 variations in a row" in brief and "ended gave_up: nothing fits" in brief
        unused = brief.split("Knowledge not consulted by any session yet:")[1]
        unused = unused.split("## Knowledge documents")[0]
        assert "exp2-scale-folding" in unused and "fa2-online-softmax" not in unused
    with ScriptedLLM([
        tool_call("read_knowledge", {"doc": "fa2-online-softmax"}),
        tool_call("give_up", {"reason": "nothing fits"}, check=has("# ")),
        tool_call("give_up", {"reason": "stop"}, check=brief_check),
    ]) as srv:
        run = make_run(tmp_path, srv.base_url, stall_limit=1)
        op = AgentOperator(run)
        assert op.propose(make_ctx(run)) is None
        assert op.propose(make_ctx(run)) is None
        srv.assert_clean()


def _chat_tokens(req) -> int:
    """A request's size by the stated estimate: characters of messages and tools / 4."""
    return (len(json.dumps(req["messages"], ensure_ascii=False))
            + len(json.dumps(req.get("tools", []), ensure_ascii=False))) // 4


def test_a_long_session_stays_under_the_context_budget(tmp_path):
    budget, sizes = 20_000, []
    docs = ["evaluator-rules", "fa2-online-softmax", "gluon-hopper-attention",
            "numerics-pitfalls", "tl-range-pipelining", "l2-grid-order"]

    def sized(call, note):
        def respond(req):
            sizes.append(_chat_tokens(req))  # the server reports what it was sent
            return tool_calls_message([call], content=note, usage=(sizes[-1], 40))
        return dynamic(respond)

    script = []
    for i, doc in enumerate(docs):
        script += [sized(("read_kernel", {}), f"NOTE-{i}a: reading the kernel again"),
                   sized(("read_knowledge", {"doc": doc}), f"NOTE-{i}b: the doc on {doc}")]
    script.append(sized(("give_up", {"reason": "enough reading"}), "NOTE-end"))

    with ScriptedLLM(script) as srv:
        run = make_run(tmp_path, srv.base_url, context_tokens=budget)
        assert AgentOperator(run).propose(make_ctx(run)) is None
        srv.assert_clean()
        last = srv.chat_requests()[-1]["messages"]
    assert len(sizes) == 13 and max(sizes) <= budget, sizes
    s = run.store.sessions()[0]
    shown = sum(len(st.result_summary) for st in run.store.agent_steps(s.id)
                if st.role == "tool")
    assert sizes[0] + shown // 4 > 2 * budget  # kept whole, it would be twice the budget
    # the session's own notes survive, the system prompt and brief are untouched
    notes = [m["content"] for m in last if m["role"] == "assistant"]
    assert notes == [f"NOTE-{i}{x}" + (": reading the kernel again" if x == "a" else
                                       f": the doc on {docs[i]}")
                     for i in range(len(docs)) for x in "ab"]
    assert last[0]["role"] == "system" and "Session brief" in last[1]["content"]
    tools = [m["content"] for m in last if m["role"] == "tool"]
    kernels = [t for t in tools if "read_kernel output" in t or t.startswith("kernel.py")]
    assert kernels[-1].startswith("kernel.py, working copy (parent #0): lines 1-")
    assert all(t.startswith("[superseded by a newer read_kernel: read_kernel output of")
               for t in kernels[:-1])
    assert any(t.startswith("[removed to fit the context budget: read_knowledge output")
               for t in tools)
    steps = [json.loads(st.arguments_json) for st in run.store.agent_steps(s.id)
             if st.role == "assistant"]
    assert steps[-1]["stubbed"] >= len(docs) + 1 and \
        all(st["context_estimate"] <= budget for st in steps)


def test_billed_attempts_of_a_request_that_fails_for_good_are_counted(tmp_path):
    # two streams lost mid-answer (the provider bills both), then the client gives up:
    # the session ends `error`, and its record still carries what those attempts cost
    reply = tool_calls_message([("read_kernel", {"note": "x" * 4000})], usage=(1000, 50))
    from tests.llm_server import Step, cut
    with ScriptedLLM([cut(Step(respond=reply), after=4) for _ in range(2)]) as srv:
        run = make_run(tmp_path, srv.base_url, model="gpt-4.1", max_retries=1)
        assert AgentOperator(run).propose(make_ctx(run)) is None
        assert len(srv.chat_requests()) == 2
    s = run.store.sessions()[0]
    assert s.outcome == "error"
    assert s.tokens_in > 1000 and s.tokens_out > 500 and s.cost_usd > 0
    assert run.store.totals()["cost_usd"] == pytest.approx(s.cost_usd)


def test_an_open_session_is_no_stalled_variation(tmp_path):
    # another proposer's session in progress (its spend posted as `open`) has not ended:
    # it is neither a variation that failed to beat the best nor a direction to avoid
    from evolve.records import SessionRecord, utc_now

    def no_plateau(req):
        brief = req["messages"][1]["content"]
        assert "plateau" not in brief and "ended open" not in brief, brief[-1500:]
    with ScriptedLLM([tool_call("give_up", {"reason": "stop"}, check=no_plateau)]) as srv:
        run = make_run(tmp_path, srv.base_url, stall_limit=1)
        run.store.record_session(SessionRecord(
            id="s-elsewhere", parent_id=0, parent2_id=None, operator="agent",
            model="test-model", outcome="open", reason="in progress", tokens_in=900,
            started_at=utc_now(), ended_at=utc_now()))
        AgentOperator(run).propose(make_ctx(run))
        srv.assert_clean()
