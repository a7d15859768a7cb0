"""`evolve llm check` against the scripted server (real CLI code path, real HTTP)."""

from __future__ import annotations

from typer.testing import CliRunner

from evolve.cli import build_app
from tests.llm_server import ScriptedLLM, http_error, text, tool_call

VLLM_400 = ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
            'to be set')


def _check(monkeypatch, srv: ScriptedLLM, *args: str):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("EVOLVE_AGENT_BACKOFF_S", "0.01")
    res = CliRunner().invoke(build_app(), ["llm", "check", "--base-url", srv.base_url, *args])
    return res.exit_code, res.output


def test_ready_endpoint(monkeypatch):
    with ScriptedLLM([tool_call("ping", {"word": "pong"})],
                     models=[{"id": "qwen-coder", "object": "model",
                              "max_model_len": 32768}]) as srv:
        code, out = _check(monkeypatch, srv)
        body = srv.chat_requests()[0]
    assert code == 0, out
    lines = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith(
        ("note", "ready", "NOT")))
    assert lines["model"] == "qwen-coder"  # the server's model, none given
    assert (lines["reachable"], lines["tools"], lines["streaming"]) == ("yes", "yes", "yes")
    assert lines["api"] == "chat" and lines["context"] == "32768 tokens"
    assert lines["price"].startswith("unknown") and "ready for evolve start" in out
    assert body["stream"] is True and body["tools"][0]["function"]["name"] == "ping"
    assert all(len(line) <= 80 for line in out.splitlines())


def test_vllm_without_tool_flags(monkeypatch):
    with ScriptedLLM([http_error(400, message=VLLM_400, vllm=True), text("ok")]) as srv:
        code, out = _check(monkeypatch, srv, "--model", "gpt-5.4")
    assert code == 1
    assert "tools      NO" in out and "reachable  yes" in out and "streaming  yes" in out
    flat = " ".join(out.split())
    assert VLLM_400 in flat and "--enable-auto-tool-choice" in flat and "$2.5 in" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_responses_api_and_a_text_answer(monkeypatch):
    with ScriptedLLM([text("pong")]) as srv:
        code, out = _check(monkeypatch, srv, "--model", "m", "--api", "responses")
        assert srv.responses_requests()
    assert code == 1 and "api        responses" in out and "answered in text" in out


def test_bad_api_is_a_usage_error(monkeypatch):
    with ScriptedLLM([]) as srv:
        code, out = _check(monkeypatch, srv, "--api", "soap")
    assert code == 2 and "unknown --api" in out
