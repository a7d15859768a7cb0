"""The chat client: the official `openai` client, our own retry/backoff, usage accounting.

The openai client's built-in retries are switched off (`max_retries=0`) so that
retries are counted and backed off in one place. The API key is read from the
environment at creation time and never stored anywhere else; nothing here logs
request headers.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import openai

RETRYABLE = (openai.RateLimitError, openai.InternalServerError,
             openai.APITimeoutError, openai.APIConnectionError)
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class AgentAPIError(RuntimeError):
    """The model endpoint failed for good (retries exhausted or a non-retryable error)."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    estimated: bool = False  # the server sent no usage; counted from text length


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model sent it


@dataclass(frozen=True)
class Completion:
    content: str | None
    tool_calls: list[ToolCall]
    usage: Usage
    latency_s: float
    attempts: int

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content or ""}
        if self.tool_calls:
            msg["tool_calls"] = [{"id": tc.id, "type": "function",
                                  "function": {"name": tc.name, "arguments": tc.arguments}}
                                 for tc in self.tool_calls]
        return msg


class ChatClient:
    """One model endpoint: `complete(messages, tools)` with retries and usage."""

    def __init__(self, model: str, base_url: str | None = None, *, timeout_s: float = 120.0,
                 max_retries: int = 3, backoff_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not model:
            raise ValueError("no model configured for the agent operator (--model)")
        self.model = model
        self.max_retries = max(0, max_retries)
        if backoff_s is None:
            backoff_s = float(os.environ.get("EVOLVE_AGENT_BACKOFF_S") or DEFAULT_BACKOFF_S)
        self.backoff_s = backoff_s
        self._sleep = sleep
        url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY")
        if not key and not url:
            raise ValueError("the agent operator needs OPENAI_API_KEY or an endpoint "
                             "(--base-url / OPENAI_BASE_URL)")
        # Local servers (vLLM, llama.cpp, ollama) accept any key; the client insists on one.
        self._client = openai.OpenAI(api_key=key or "not-needed", base_url=url,
                                     timeout=timeout_s, max_retries=0)

    def _delay(self, attempt: int, err: Exception) -> float:
        delay = self.backoff_s * (2 ** attempt) * (1 + 0.25 * random.random())
        if isinstance(err, openai.APIStatusError):  # a 429 / 5xx may say how long to wait
            try:
                delay = max(delay, float(err.response.headers.get("retry-after")))
            except (TypeError, ValueError):
                pass
        return min(delay, MAX_BACKOFF_S)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        attempt = 0
        t0 = time.monotonic()
        while True:
            try:
                # tool_choice is left out: "auto" is the API default when tools are given,
                # and some local servers reject an explicit value without extra flags
                resp = self._client.chat.completions.create(
                    model=self.model, messages=messages, tools=tools or openai.NOT_GIVEN)
                break
            except RETRYABLE as e:
                if attempt >= self.max_retries:
                    raise AgentAPIError(f"{_describe(e)} after {attempt + 1} attempt(s)",
                                        attempt + 1) from None
                self._sleep(self._delay(attempt, e))
                attempt += 1
            except openai.APIStatusError as e:
                raise AgentAPIError(_describe(e), attempt + 1) from None
            except openai.OpenAIError as e:
                raise AgentAPIError(f"{type(e).__name__}: {e}", attempt + 1) from None
        latency = time.monotonic() - t0
        if not resp.choices:
            raise AgentAPIError("the model returned no choices", attempt + 1)
        msg = resp.choices[0].message
        calls = [ToolCall(id=tc.id or f"call_{i}", name=tc.function.name,
                          arguments=tc.function.arguments or "")
                 for i, tc in enumerate(msg.tool_calls or []) if getattr(tc, "function", None)]
        if resp.usage is not None and resp.usage.prompt_tokens is not None:
            usage = Usage(int(resp.usage.prompt_tokens or 0), int(resp.usage.completion_tokens or 0))
        else:
            # no usage from the server: about 4 characters a token
            out_text = (msg.content or "") + "".join(c.arguments for c in calls)
            usage = Usage(max(1, len(json.dumps(messages)) // 4), max(1, len(out_text) // 4),
                          estimated=True)
        return Completion(content=msg.content, tool_calls=calls, usage=usage, latency_s=latency,
                          attempts=attempt + 1)


def _describe(e: Exception) -> str:
    """A one-line description of an API error that carries no request headers."""
    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code} from the model endpoint ({type(e).__name__})"
    if isinstance(e, openai.APITimeoutError):
        return "the model endpoint timed out"
    if isinstance(e, openai.APIConnectionError):
        return "could not connect to the model endpoint"
    return type(e).__name__
