"""What a model endpoint's failure means: retry and wait, switch API, or stop the run.

Three typed errors, read by the client (`client.py`) and the session:
- `AgentAPIError`: this request failed for good (waited too long, ran past the request
  limit, an answer that cannot be used); the session ends `error`, the run goes on.
- `EndpointFatal`: a 4xx that will fail the same way every time (bad model name, key,
  server flags); the run stops at once with exit code 1 and `EndpointFatal.hint` says
  what to fix. Not a subclass of AgentAPIError, so no session handler swallows it.
- a switch hint (`names_other_api`): a 400/404 that names the other OpenAI API.

The server's own words are always kept: OpenAI sends `{"error": {"message": ...}}`,
vLLM `{"object": "error", "message": ...}`, others plain text.
"""

from __future__ import annotations

import re
from typing import Any

import openai

from evolve.operators.base import RunFatal


class AgentAPIError(RuntimeError):
    """The model endpoint failed for good for this request (the session ends `error`)."""

    def __init__(self, message: str, attempts: int, usage: Any = None):
        super().__init__(message)
        self.attempts = attempts
        self.usage = usage  # a completion.Usage: what its attempts were billed (estimated)


class EndpointFatal(RunFatal):
    """A request the endpoint will refuse every time: the run must stop (exit code 1)."""

    usage: Any = None  # a completion.Usage: what earlier attempts of it were billed

    def __init__(self, status: int | None, server_text: str, hint: str):
        what = f"HTTP {status}" if status is not None else "error"
        super().__init__(f"model endpoint refused the request ({what}): {server_text} "
                         f"-- {hint}")
        self.status, self.server_text, self.hint = status, server_text, hint


def server_message(e: BaseException) -> str:
    """The server's own error text, on one line (never request headers)."""
    body = getattr(e, "body", None)
    text = ""
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = str(inner.get("message") or body.get("detail") or "")
    elif isinstance(body, str):
        text = body
    if not text and isinstance(e, openai.APIStatusError):
        try:
            text = e.response.text
        except Exception:  # noqa: BLE001 - a streamed body that cannot be read
            text = ""
    text = " ".join((text or getattr(e, "message", "") or type(e).__name__).split())
    return text[:600]


def error_code(e: BaseException) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        return str(inner.get("code") or inner.get("type") or "")
    return ""


def describe(e: BaseException) -> str:
    """One line: what failed and the server's words."""
    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code} from the model endpoint: {server_message(e)}"
    if isinstance(e, openai.APITimeoutError):
        return "the model endpoint timed out"
    if isinstance(e, openai.APIConnectionError):
        return "could not connect to the model endpoint"
    return f"{type(e).__name__}: {server_message(e)}"


_CHAT = re.compile(r"chat[./_ ]?completions", re.I)
_RESPONSES = re.compile(r"/responses\b|responses api|v1/responses", re.I)


def names_other_api(e: BaseException, api: str) -> bool:
    """A 400/404 whose text says the other OpenAI API must be used."""
    if not isinstance(e, openai.APIStatusError) or e.status_code not in (400, 404):
        return False
    text = server_message(e)
    return bool(_RESPONSES.search(text) if api == "chat" else _CHAT.search(text))


def refuses_encrypted_reasoning(e: BaseException) -> bool:
    """OpenAI's 400 for `include=["reasoning.encrypted_content"]` sent to a model that does
    not reason (gpt-4.1, gpt-4o, *-chat-latest): "Encrypted content is not supported"."""
    if not isinstance(e, openai.APIStatusError) or e.status_code != 400:
        return False
    body = getattr(e, "body", None)
    inner = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"),
                                                                        dict) else body
    param = str(inner.get("param") or "") if isinstance(inner, dict) else ""
    return param == "include" or "encrypted content is not supported" in \
        server_message(e).lower()


# codes of an error reported inside a stream (a Responses `response.failed` / `error`
# event) that say the server failed or was rate-limited, as a 5xx / 429 would
_TRANSIENT_CODES = ("server_error", "rate_limit_exceeded")


def retryable(e: BaseException) -> bool:
    """Rate limits, server errors (also reported mid-stream), timeouts and lost
    connections: wait and try again. A 429 for an exhausted quota is not a rate limit
    (waiting does not help)."""
    if isinstance(e, openai.RateLimitError):
        return error_code(e) != "insufficient_quota"
    if isinstance(e, openai.APIStatusError):
        return e.status_code >= 500 or e.status_code in (408, 409)
    if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(e, openai.APIError) and error_code(e) in _TRANSIENT_CODES


def fatal(e: openai.APIStatusError, model: str, api: str) -> EndpointFatal:
    """The EndpointFatal for a 4xx, with one line on what to fix."""
    text, status = server_message(e), e.status_code
    low = text.lower()
    if "tool-call-parser" in low or "auto-tool-choice" in low or "tool choice" in low:
        hint = ("start vLLM with --enable-auto-tool-choice --tool-call-parser <parser for "
                "your model> (see README, Pointing it at an LLM)")
    elif "--jinja" in low or "jinja" in low:
        hint = "start llama-server with --jinja (tool calls need the model's chat template)"
    elif "context" in low and ("length" in low or "window" in low or "maximum" in low):
        hint = ("the request is longer than the server's context: `evolve resume` with a "
                "lower --context-tokens (evolve llm check shows the server's length)")
    elif status == 401:
        hint = "check OPENAI_API_KEY (the key was refused)"
    elif status == 403:
        hint = f"the key has no access to model {model!r}: check --model and the key's project"
    elif status == 404 or "model" in low and ("not exist" in low or "not found" in low):
        hint = f"check --model {model!r} and --base-url (run: evolve llm check)"
    elif error_code(e) == "insufficient_quota":
        hint = "the account's quota is used up: add credit or use another key"
    elif "reasoning" in low or "effort" in low:
        hint = "check --reasoning-effort (this model may not take it)"
    else:
        hint = f"check --model, --api ({api}) and the server's flags (run: evolve llm check)"
    return EndpointFatal(status, text, hint)
