"""What one model request returns, whichever API answered: a `Completion` (text, tool
calls, `Usage`), and the `Watch` that follows a streamed answer (tokens so far, the
request's time limit, a progress line)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

Progress = Callable[[str, bool], None]  # (one line, urgent: print it now)
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0  # prompt tokens, cached ones included
    tokens_out: int = 0  # completion tokens, reasoning included
    cached_in: int = 0  # prompt tokens the server read from its cache (priced lower)
    estimated: bool = False  # counted from text length (no usage sent, or a lost attempt)

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out,
                     self.cached_in + other.cached_in, self.estimated or other.estimated)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model sent it


@dataclass(frozen=True)
class Reply:
    """One API adapter's answer; `extra` goes into the assistant message under keys that
    start with "_" (opaque per-API state, e.g. encrypted reasoning), which the chat
    adapter strips."""
    content: str | None
    tool_calls: list[ToolCall]
    usage: Usage | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    content: str | None
    tool_calls: list[ToolCall]
    usage: Usage  # this request's, plus what failed attempts of it were billed (estimated)
    latency_s: float
    attempts: int
    api: str = "chat"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation (Chat Completions form)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content or ""}
        if self.tool_calls:
            msg["tool_calls"] = [{"id": tc.id, "type": "function",
                                  "function": {"name": tc.name, "arguments": tc.arguments}}
                                 for tc in self.tool_calls]
        msg.update(self.extra)
        return msg


class RequestLimit(Exception):
    """The request ran past its total time limit."""


def estimate_tokens(obj: Any) -> int:
    """About 4 characters a token."""
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return max(1, len(text) // 4)


class Watch:
    """Follows one streamed answer: characters received, the time limit, progress."""

    def __init__(self, limit_s: float, progress: Progress | None, label: str):
        self.t0 = time.monotonic()
        self.limit_s, self.progress, self.label = limit_s, progress, label
        self.chars = 0
        self.started = False  # the answer began to arrive (the model is working on it)
        self.first_s: float | None = None
        self._shown = 0.0

    def got(self, text: str | None) -> None:
        """Call for every delta (and every event: the time limit is checked here)."""
        now = time.monotonic()
        self.started = True
        if text:
            self.chars += len(text)
            if self.first_s is None:
                self.first_s = now - self.t0
        if now - self.t0 > self.limit_s:
            raise RequestLimit(f"the request ran past its {self.limit_s / 60:g}-minute limit "
                               f"(~{self.tokens} tokens received; --request-limit-min)")
        if self.progress is not None and now - self._shown >= PROGRESS_EVERY_S:
            self._shown = now
            self.progress(self.line(), False)

    @property
    def tokens(self) -> int:
        return self.chars // 4

    def line(self) -> str:
        s = int(time.monotonic() - self.t0)
        what = f"~{self.tokens} tokens so far" if self.chars else "waiting for the first token"
        return f"{self.label}: {what} ({s // 60}:{s % 60:02d})"
