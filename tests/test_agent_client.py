"""The chat client against the scripted server: real openai client, real HTTP."""

from __future__ import annotations

import pytest

from evolve.agent.client import AgentAPIError, ChatClient
from tests.llm_server import ScriptedLLM, http_error, slow, text, tool_call

MSGS = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
TOOLS = [{"type": "function", "function": {"name": "read_kernel", "description": "d",
                                           "parameters": {"type": "object", "properties": {}}}}]


def _client(server: ScriptedLLM, **kw) -> ChatClient:
    kw.setdefault("backoff_s", 0.01)
    return ChatClient("test-model", server.base_url, **kw)


def test_tool_call_and_usage(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-123")
    with ScriptedLLM([tool_call("read_kernel", {}, usage=(1234, 56))]) as srv:
        comp = _client(srv).complete(MSGS, TOOLS)
    assert [c.name for c in comp.tool_calls] == ["read_kernel"]
    assert (comp.usage.tokens_in, comp.usage.tokens_out) == (1234, 56)
    assert not comp.usage.estimated and comp.attempts == 1
    req = srv.requests[0]
    assert req["body"]["model"] == "test-model" and req["body"]["tools"][0]["type"] == "function"
    # the key travels only in the Authorization header of the request itself
    assert req["headers"].get("authorization") == "Bearer sk-test-SECRET-123"


def test_500_then_success_is_retried():
    with ScriptedLLM([http_error(500), tool_call("read_kernel", {})]) as srv:
        comp = _client(srv).complete(MSGS, TOOLS)
    assert comp.attempts == 2 and len(srv.chat_requests()) == 2


def test_429_honours_retry_after_then_succeeds():
    slept: list[float] = []
    with ScriptedLLM([http_error(429, retry_after=0.05), text("hi")]) as srv:
        comp = _client(srv, sleep=lambda s: slept.append(s)).complete(MSGS, TOOLS)
    assert comp.content == "hi" and comp.tool_calls == []
    assert slept and slept[0] >= 0.05


def test_retries_exhausted_raise_typed_error():
    with ScriptedLLM([http_error(503)] * 3) as srv:
        with pytest.raises(AgentAPIError) as ei:
            _client(srv, max_retries=2).complete(MSGS, TOOLS)
    assert ei.value.attempts == 3 and "503" in str(ei.value)


def test_400_is_not_retried():
    with ScriptedLLM([http_error(400), text("never")]) as srv:
        with pytest.raises(AgentAPIError):
            _client(srv).complete(MSGS, TOOLS)
        assert srv.remaining == 1


def test_timeout_is_retried_then_fails():
    with ScriptedLLM([slow(text("late"), 2.0), slow(text("late"), 2.0)]) as srv:
        with pytest.raises(AgentAPIError) as ei:
            _client(srv, timeout_s=0.3, max_retries=1).complete(MSGS, TOOLS)
    assert "timed out" in str(ei.value) and ei.value.attempts == 2


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
