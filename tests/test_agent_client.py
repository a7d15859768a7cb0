"""The model client against the scripted server: real openai client, real HTTP, both
OpenAI APIs streamed, waits, fatal errors, the auto switch, lost attempts counted."""

from __future__ import annotations

import json
import time

import pytest

from evolve.agent.client import AgentAPIError, ChatClient, EndpointFatal
from tests.llm_server import (ScriptedLLM, Step, cut, http_error, slow, stream_failed,
                              streamed, text, tool_call, tool_calls_message)

MSGS = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
TOOLS = [{"type": "function", "function": {"name": "read_kernel", "description": "d",
                                           "parameters": {"type": "object", "properties": {}}}}]
VLLM_400 = ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
            'to be set')


def _client(server: ScriptedLLM, **kw) -> ChatClient:
    kw.setdefault("backoff_s", 0.01)
    return ChatClient("test-model", server.base_url, **kw)


def test_chat_streams_tool_call_and_usage(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-123")
    lines: list[str] = []
    with ScriptedLLM([tool_call("read_kernel", {"start": 1}, usage=(1234, 56, 1000))]) as srv:
        comp = _client(srv, api="chat", reasoning_effort="high",
                       on_progress=lambda line, urgent: lines.append(line)).complete(MSGS, TOOLS)
    assert [(c.name, json.loads(c.arguments)) for c in comp.tool_calls] == [
        ("read_kernel", {"start": 1})]
    u = comp.usage
    assert (u.tokens_in, u.tokens_out, u.cached_in, u.estimated) == (1234, 56, 1000, False)
    assert comp.attempts == 1 and comp.api == "chat" and lines
    req = srv.requests[0]
    body = req["body"]
    assert req["path"].endswith("/chat/completions") and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["reasoning_effort"] == "high" and body["tools"][0]["type"] == "function"
    # nothing a reasoning model rejects
    assert not {"temperature", "max_tokens", "tool_choice"} & set(body)
    # the key travels only in the Authorization header of the request itself
    assert req["headers"].get("authorization") == "Bearer sk-test-SECRET-123"


def test_responses_api_converts_the_conversation():
    msgs = MSGS + [
        {"role": "assistant", "content": "looking", "tool_calls": [
            {"id": "call_7", "type": "function",
             "function": {"name": "read_kernel", "arguments": "{}"}}],
         "_reasoning": [{"type": "reasoning", "encrypted_content": "enc-x", "summary": []}]},
        {"role": "tool", "tool_call_id": "call_7", "content": "def attention(): ..."}]
    with ScriptedLLM([tool_call("submit", {"hypothesis": "h"}, content="done",
                                usage=(900, 30, 800)),
                      text("plain")]) as srv:
        client = _client(srv, api="responses", reasoning_effort="low")
        client.encrypted_reasoning = True  # what OpenAI's own endpoint gets
        comp = client.complete(msgs, TOOLS)
        body = srv.responses_requests()[0]
        assert body["store"] is False and body["stream"] is True
        assert body["instructions"] == "s" and body["reasoning"] == {"effort": "low"}
        assert body["include"] == ["reasoning.encrypted_content"]
        assert body["tools"] == [{"type": "function", "name": "read_kernel",
                                  "description": "d", "strict": False,
                                  "parameters": {"type": "object", "properties": {}}}]
        assert body["input"] == [
            {"role": "user", "content": "u"},
            {"type": "reasoning", "encrypted_content": "enc-x", "summary": []},
            {"role": "assistant", "content": "looking"},
            {"type": "function_call", "call_id": "call_7", "name": "read_kernel",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_7",
             "output": "def attention(): ..."}]
        assert not {"temperature", "max_output_tokens", "previous_response_id"} & set(body)
        assert comp.content == "done" and [c.name for c in comp.tool_calls] == ["submit"]
        u = comp.usage
        assert (u.tokens_in, u.tokens_out, u.cached_in) == (900, 30, 800)
        # the new reasoning item rides along in the assistant message, not in chat requests
        msg = comp.as_message()
        assert msg["_reasoning"][0]["encrypted_content"].startswith("enc-resp_")
        _client(srv, api="chat").complete(msgs + [msg], [])
        assert all(not k.startswith("_") for m in srv.chat_requests()[0]["messages"] for k in m)


def test_a_model_without_reasoning_gets_no_include():
    refusal = http_error(400, message="Encrypted content is not supported with this model.")
    refusal.respond["error"]["param"] = "include"
    with ScriptedLLM([refusal, text("hi"), text("again")]) as srv:
        client = _client(srv, api="responses")
        client.encrypted_reasoning = True
        assert client.complete(MSGS, TOOLS).content == "hi"
        client.complete(MSGS, TOOLS)
    includes = [b.get("include") for b in srv.responses_requests()]
    assert includes == [["reasoning.encrypted_content"], None, None]


def test_server_keeps_previous_response_id_chains():
    """The scripted server itself: a stored response continues; an unknown id is a 400."""
    import openai

    with ScriptedLLM([text("one"), text("two")]) as srv:
        c = openai.OpenAI(api_key="k", base_url=srv.base_url, max_retries=0)
        r1 = c.responses.create(model="m", input="hello")
        r2 = c.responses.create(model="m", input="again", previous_response_id=r1.id)
        with pytest.raises(openai.BadRequestError, match="not found"):
            c.responses.create(model="m", input="x", previous_response_id="resp_nope")
    assert r2.output_text == "two"
    full = srv.requests[1]["input_full"]
    assert [i.get("content") for i in full if i.get("role") == "user"] == ["hello", "again"]
    assert any(i.get("type") == "message" for i in full)  # the first answer, from the chain


def test_500_then_success_is_retried():
    with ScriptedLLM([http_error(500), tool_call("read_kernel", {})]) as srv:
        comp = _client(srv).complete(MSGS, TOOLS)
    assert comp.attempts == 2 and len(srv.chat_requests()) == 2
    assert not comp.usage.estimated  # a refused request is not billed


def test_429_honours_retry_after_and_says_so():
    slept: list[float] = []
    lines: list[tuple[str, bool]] = []
    with ScriptedLLM([http_error(429, retry_after=0.05, message="slow down"),
                      text("hi")]) as srv:
        comp = _client(srv, sleep=slept.append,
                       on_progress=lambda s, u: lines.append((s, u))).complete(MSGS, TOOLS)
    assert comp.content == "hi" and comp.tool_calls == []
    assert slept and slept[0] >= 0.05
    assert any(urgent and "slow down" in s and "waiting" in s for s, urgent in lines)


def test_waiting_stops_at_the_wait_limit():
    with ScriptedLLM([http_error(503)] * 10) as srv:
        with pytest.raises(AgentAPIError) as ei:
            _client(srv, backoff_s=0.05, max_wait_s=0.2).complete(MSGS, TOOLS)
    assert "503" in str(ei.value) and 2 <= ei.value.attempts < 10


def test_retries_exhausted_raise_typed_error():
    with ScriptedLLM([http_error(503)] * 3) as srv:
        with pytest.raises(AgentAPIError) as ei:
            _client(srv, max_retries=2).complete(MSGS, TOOLS)
    assert ei.value.attempts == 3 and "503" in str(ei.value)


def test_vllm_400_is_fatal_with_the_servers_words_and_a_fix():
    with ScriptedLLM([http_error(400, message=VLLM_400, vllm=True), text("never")]) as srv:
        with pytest.raises(EndpointFatal) as ei:
            _client(srv).complete(MSGS, TOOLS)
        assert srv.remaining == 1
    msg = str(ei.value)
    assert VLLM_400 in msg and "--enable-auto-tool-choice --tool-call-parser" in ei.value.hint
    assert not isinstance(ei.value, AgentAPIError)  # no session handler swallows it


@pytest.mark.parametrize("status,code,fix", [(401, None, "OPENAI_API_KEY"),
                                             (404, "model_not_found", "--model"),
                                             (429, "insufficient_quota", "quota")])
def test_other_4xx_are_fatal(status, code, fix):
    with ScriptedLLM([http_error(status, message="no", code=code)]) as srv:
        with pytest.raises(EndpointFatal) as ei:
            _client(srv).complete(MSGS, TOOLS)
    assert fix in ei.value.hint and ei.value.status == status


def test_auto_switches_once_to_responses():
    hint = ("Function tools with reasoning_effort are not supported for gpt-5.4 in "
            "/v1/chat/completions. Please use /v1/responses instead.")
    switched: list[str] = []
    with ScriptedLLM([http_error(400, message=hint), tool_call("read_kernel", {}),
                      text("again")]) as srv:
        client = _client(srv, api="auto", on_switch=lambda api, why: switched.append(api))
        assert client.api == "chat"  # a custom base URL starts on Chat Completions
        comp = client.complete(MSGS, TOOLS)
        client.complete(MSGS, TOOLS)
    assert switched == ["responses"] and comp.api == "responses" and comp.attempts == 2
    assert [r["path"].rsplit("/", 1)[-1] for r in srv.requests] == [
        "completions", "responses", "responses"]


def test_switch_hint_without_auto_is_fatal():
    with ScriptedLLM([http_error(400, message="Please use /v1/responses")]) as srv:
        with pytest.raises(EndpointFatal):
            _client(srv, api="chat").complete(MSGS, TOOLS)


def test_a_lost_stream_is_retried_and_its_tokens_counted():
    reply = tool_calls_message([("read_kernel", {"note": "x" * 400})], usage=(1000, 50))
    with ScriptedLLM([cut(Step(respond=reply), after=4), Step(respond=reply)]) as srv:
        comp = _client(srv).complete(MSGS, TOOLS)
    assert comp.attempts == 2 and len(srv.requests) == 2
    u = comp.usage
    assert u.estimated and u.tokens_in > 1000 and u.tokens_out > 50  # the lost one billed


def test_request_limit_ends_the_request_without_retry():
    with ScriptedLLM([streamed(tool_call("read_kernel", {"x": "y" * 200}), 3.0)] * 2) as srv:
        with pytest.raises(AgentAPIError, match="limit") as err:
            _client(srv, request_limit_s=0.8).complete(MSGS, TOOLS)
        assert len(srv.requests) == 1
    # the model worked on it until it was cut off: billed, so counted (estimated)
    u = err.value.usage
    assert u.estimated and u.tokens_in >= len(json.dumps(MSGS)) // 4


def test_headers_slower_than_the_limit_are_not_retried():
    with ScriptedLLM([slow(text("late"), 2.0), text("late")]) as srv:
        with pytest.raises(AgentAPIError, match="limit"):
            _client(srv, request_limit_s=0.3).complete(MSGS, TOOLS)
        assert len(srv.requests) == 1


@pytest.mark.slow  # really streams for 150 s (the one long test of the agent client)
def test_a_150_second_streamed_answer_keeps_the_session(tmp_path, monkeypatch):
    from evolve.agent import AgentOperator
    from tests.agent_support import config_edit, make_ctx, make_run, seed_source

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("EVOLVE_AGENT_BACKOFF_S", "0.01")
    source = seed_source().replace(*config_edit(seed_source()))
    assert source != seed_source()
    with ScriptedLLM([streamed(tool_call("write_kernel", {"source": source},
                                         content="Writing the whole kernel."), 150.0),
                      tool_call("submit", {"hypothesis": "BLOCK_N 32"})]) as srv:
        run = make_run(tmp_path, srv.base_url, max_wait_min=0.1)  # a failure ends fast
        t0 = time.monotonic()
        prop = AgentOperator(run).propose(make_ctx(run))
        took = time.monotonic() - t0
        srv.assert_clean()
    assert took >= 150 and prop is not None and prop.source == source
    assert len(srv.requests) == 2  # the long answer was requested exactly once
    s = run.store.sessions()[0]
    assert s.outcome == "submitted" and s.tokens_in == 2000
    run.close()


def test_missing_usage_is_estimated():
    with ScriptedLLM([tool_call("read_kernel", {}, usage=None)]) as srv:
        comp = _client(srv).complete(MSGS, TOOLS)
    assert comp.usage.estimated and comp.usage.tokens_in > 0 and comp.usage.tokens_out > 0


def test_base_url_from_environment(monkeypatch):
    with ScriptedLLM([text("env")]) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        comp = ChatClient("m", None, backoff_s=0.01).complete(MSGS, [])
    assert comp.content == "env"


def test_no_key_and_no_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY or an endpoint"):
        ChatClient("m", None)


def test_auto_is_responses_on_openais_endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert ChatClient("gpt-5.4", None).api == "responses"
    assert ChatClient("m", "http://localhost:8000/v1").api == "chat"


def test_progress_lines_reach_the_console_throttled():
    import io

    from rich.console import Console

    from evolve.display import PlainProgress, ProgressState

    out = io.StringIO()
    p = PlainProgress(ProgressState("r", "gqa", "agent", None), Console(file=out, width=80))
    p.activity("model m: ~10 tokens so far (0:01)")  # shown on the panel, not printed yet
    p.activity("model endpoint: HTTP 429 ...; waiting 4 s", urgent=True)
    assert p.state.model_line.startswith("model endpoint: HTTP 429")
    assert "waiting 4 s" in out.getvalue() and "~10 tokens" not in out.getvalue()


def test_a_streamed_response_failed_with_a_server_error_is_waited_out():
    # OpenAI reports a 5xx / rate limit that happens mid-answer as `response.failed`
    # with code server_error / rate_limit_exceeded: waited out like the HTTP ones
    with ScriptedLLM([stream_failed(tool_call("read_kernel", {}), "server_error"),
                      stream_failed(tool_call("read_kernel", {}), "rate_limit_exceeded"),
                      tool_call("read_kernel", {"start": 2})]) as srv:
        comp = _client(srv, api="responses").complete(MSGS, TOOLS)
    assert comp.attempts == 3 and [c.arguments for c in comp.tool_calls] == ['{"start": 2}']
    assert comp.usage.estimated  # the failed answers were under way: counted
    # a failure that will repeat ends the request at once, with the server's words
    with ScriptedLLM([stream_failed(tool_call("read_kernel", {}), "invalid_prompt",
                                    "prompt flagged")] * 2) as srv:
        with pytest.raises(AgentAPIError, match="prompt flagged"):
            _client(srv, api="responses").complete(MSGS, TOOLS)
        assert len(srv.requests) == 1
