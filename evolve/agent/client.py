"""The model client: one endpoint, `complete(messages, tools) -> Completion`, whichever
OpenAI API it speaks (`api_chat.py`, `api_responses.py`), streamed.

- API choice: `chat`, `responses`, or `auto` (Responses on OpenAI's own endpoint, Chat
  Completions on a custom base URL). Under `auto`, a 400/404 that names the other API
  switches once (`on_switch` is told, the operator records it in the run).
- Time: a request may run as long as the model keeps sending, up to `request_limit_s` in
  all (default 20 min); `on_progress` gets a one-line "tokens so far" about every second.
- Errors (`endpoint_errors.py`): rate limits, 5xx, timeouts and lost connections are
  waited out with backoff (retry-after honoured), up to `max_wait_s` of waiting per
  request (and `max_retries` if set); the run pauses, it does not end. Any other 4xx
  raises `EndpointFatal` (the run stops, exit 1) with the server's own words.
- Usage: the server's (cached prompt tokens kept apart), else estimated from text
  length; an attempt that reached the model and was lost (timeout, dropped stream)
  adds its estimated tokens, since the provider bills it; a request that fails for good
  carries them in its error (`AgentAPIError.usage`, `EndpointFatal.usage`).

The openai client's own retries are off (`max_retries=0`). The API key is read from the
environment at creation and never stored elsewhere; nothing here logs request headers.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable

import openai

from evolve.agent import api_chat, api_responses
from evolve.agent.completion import (Completion, Progress, RequestLimit, ToolCall, Usage,
                                     Watch, estimate_tokens)
from evolve.agent.endpoint_errors import (AgentAPIError, EndpointFatal, describe, fatal,
                                          names_other_api, refuses_encrypted_reasoning,
                                          retryable, server_message)

__all__ = ["AgentAPIError", "ChatClient", "Completion", "EndpointFatal", "ModelClient",
           "ToolCall", "Usage", "APIS", "resolve_api"]

APIS = ("auto", "chat", "responses")
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
CONNECT_TIMEOUT_S = 30.0


def openai_hosted(base_url: str | None) -> bool:
    return not base_url or "api.openai.com" in base_url


def resolve_api(api: str, base_url: str | None) -> str:
    """The API `auto` starts with: Responses on OpenAI's endpoint, else Chat Completions."""
    if api not in APIS:
        raise ValueError(f"unknown --api {api!r} (auto, chat or responses)")
    if api != "auto":
        return api
    return "responses" if openai_hosted(base_url) else "chat"


class ModelClient:
    """One model endpoint: `complete(messages, tools)` with streaming, waits and usage."""

    def __init__(self, model: str, base_url: str | None = None, *, api: str = "auto",
                 reasoning_effort: str | None = None, request_limit_s: float = 1200.0,
                 max_wait_s: float = 1800.0, max_retries: int | None = None,
                 backoff_s: float | None = None, timeout_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_progress: Progress | None = None,
                 on_switch: Callable[[str, str], None] | None = None):
        if not model:
            raise ValueError("no model configured for the agent operator (--model)")
        self.model = model
        url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY")
        if not key and not url:
            raise ValueError("the agent operator needs OPENAI_API_KEY or an endpoint "
                             "(--base-url / OPENAI_BASE_URL)")
        self.base_url = url
        # only OpenAI returns it, and only for reasoning models (dropped on the first 400)
        self.encrypted_reasoning = openai_hosted(url)
        self.api = resolve_api(api, url)
        self.auto = api == "auto"  # may still switch once
        self.effort = reasoning_effort or None
        self.request_limit_s = float(timeout_s if timeout_s is not None else request_limit_s)
        self.max_wait_s = float(max_wait_s)
        self.max_retries = max_retries
        if backoff_s is None:
            backoff_s = float(os.environ.get("EVOLVE_AGENT_BACKOFF_S") or DEFAULT_BACKOFF_S)
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.on_progress = on_progress
        self.on_switch = on_switch
        # Local servers (vLLM, llama.cpp, ollama) accept any key; the client insists on one.
        # The read timeout is the whole limit: a reasoning model may think for minutes
        # before its first byte; Watch enforces the total between stream events.
        timeout = openai.Timeout(self.request_limit_s, connect=CONNECT_TIMEOUT_S)
        self._client = openai.OpenAI(api_key=key or "not-needed", base_url=url,
                                     timeout=timeout, max_retries=0)

    @classmethod
    def from_config(cls, cfg: Any, **kw: Any) -> "ModelClient":
        """A client for an AgentConfig (evolve.config)."""
        return cls(cfg.model, cfg.base_url, api=cfg.api, reasoning_effort=cfg.reasoning_effort,
                   request_limit_s=cfg.request_limit_min * 60, max_wait_s=cfg.max_wait_min * 60,
                   max_retries=cfg.max_retries, **kw)

    # ------------------------------------------------------------------ state
    def use_api(self, api: str) -> None:
        """Fix the API (a switch remembered by the run); no further auto switch."""
        self.api = resolve_api(api, self.base_url)
        self.auto = False

    def _say(self, line: str, urgent: bool = True) -> None:
        if self.on_progress is not None:
            self.on_progress(line, urgent)

    def _delay(self, attempt: int, err: Exception) -> float:
        delay = self.backoff_s * (2 ** attempt) * (1 + 0.25 * random.random())
        if isinstance(err, openai.APIStatusError):  # a 429 / 5xx may say how long to wait
            try:
                delay = max(delay, float(err.response.headers.get("retry-after")))
            except (TypeError, ValueError):
                pass
        return min(delay, MAX_BACKOFF_S)

    def _send(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
              watch: Watch) -> Any:
        if self.api == "responses":
            return api_responses.request(
                self._client, self.model, messages, tools, self.effort, watch,
                encrypted_reasoning=self.encrypted_reasoning)
        return api_chat.request(self._client, self.model, messages, tools, self.effort, watch)

    @staticmethod
    def _billed(messages: list[dict[str, Any]], watch: Watch) -> Usage:
        """An attempt the model worked on and that was lost, as the provider bills it."""
        return Usage(estimate_tokens(messages), watch.tokens, 0, True)

    # ----------------------------------------------------------------- request
    def complete(self, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]]) -> Completion:
        attempt, waited, lost = 0, 0.0, Usage()
        t0 = time.monotonic()
        while True:
            watch = Watch(self.request_limit_s, self.on_progress, f"model {self.model}")
            try:
                reply = self._send(messages, tools, watch)
                break
            except RequestLimit as e:  # the model worked on it all along: billed
                raise AgentAPIError(str(e), attempt + 1,
                                    lost + self._billed(messages, watch)) from None
            except openai.OpenAIError as e:
                if isinstance(e, openai.APITimeoutError) and \
                        time.monotonic() - watch.t0 >= self.request_limit_s - 0.01:
                    raise AgentAPIError(f"the request ran past its {self.request_limit_s / 60:g}"
                                        "-minute limit (--request-limit-min)",
                                        attempt + 1, lost + self._billed(messages, watch)) \
                        from None
                if self.api == "responses" and self.encrypted_reasoning and \
                        refuses_encrypted_reasoning(e):  # a model that does not reason
                    self.encrypted_reasoning = False
                    attempt += 1
                    continue
                if self.auto and names_other_api(e, self.api):
                    old, self.api = self.api, ("chat" if self.api == "responses"
                                               else "responses")
                    self.auto = False
                    self._say(f"model endpoint: {server_message(e)} -> switching from "
                              f"{old} to {self.api}")
                    if self.on_switch is not None:
                        self.on_switch(self.api, server_message(e))
                    attempt += 1
                    continue
                if not retryable(e):
                    if isinstance(e, openai.APIStatusError) and 400 <= e.status_code < 500:
                        err = fatal(e, self.model, self.api)
                        err.usage = lost
                        raise err from None
                    if watch.started:  # e.g. a streamed `response.failed`
                        lost = lost + self._billed(messages, watch)
                    raise AgentAPIError(describe(e), attempt + 1, lost) from None
                if watch.started or isinstance(e, openai.APITimeoutError):
                    # the model was working on it when it was lost: the provider bills it
                    lost = lost + self._billed(messages, watch)
                delay = self._delay(attempt, e)
                out_of_tries = self.max_retries is not None and attempt >= self.max_retries
                if out_of_tries or waited + delay > self.max_wait_s:
                    raise AgentAPIError(f"{describe(e)} (gave up after {attempt + 1} "
                                        f"attempt(s), {waited:.0f} s of waiting)",
                                        attempt + 1, lost) from None
                self._say(f"model endpoint: {describe(e)[:200]}; waiting {delay:.0f} s "
                          f"(paused {waited:.0f} s so far, limit {self.max_wait_s:.0f} s)")
                self._sleep(delay)
                waited += delay
                attempt += 1
        usage = reply.usage
        if usage is None:  # no usage from the server: about 4 characters a token
            out = (reply.content or "") + "".join(c.arguments for c in reply.tool_calls)
            usage = Usage(estimate_tokens(messages), estimate_tokens(out), 0, True)
        latency = time.monotonic() - t0
        self._say(f"model {self.model}: answered in {latency:.0f} s "
                  f"({usage.tokens_out} tokens out)", urgent=False)
        return Completion(content=reply.content, tool_calls=reply.tool_calls,
                          usage=usage + lost, latency_s=latency,
                          attempts=attempt + 1, api=self.api, extra=reply.extra)


ChatClient = ModelClient  # the name the session and older code use
