"""Keeping a session's conversation under its context budget (Chat-Completions messages).

Every tool output, and the long arguments of a call (a `write_kernel` source), is an
*item* with an optional `Mark`: its topic and the lines it shows. A newer item whose mark
covers an older one supersedes it: the older text is replaced by a short stub at once (a
later read of the same kernel lines, a later evaluation, a full new kernel written).
Before each request, when the estimate is still over the budget, the oldest remaining
items are stubbed too (the newest batch of tool answers is kept). The system prompt, the
brief, nudges and the model's own text (its notes) are never touched; tool_call ids stay
paired, so the conversation stays valid for any server.

Size estimate: the server's reported prompt tokens of the previous request plus the
characters added (or removed by stubs) since, divided by 4; without a report, every
character of the messages and tool schemas divided by 4 (`CHARS_PER_TOKEN`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 4
LONG_ARG = 400  # call arguments longer than this (characters) are stubbed with their item


@dataclass(frozen=True)
class Mark:
    """What a tool output shows: a topic ("kernel", "evaluation", "knowledge:<id>", ...)
    and, for line-addressed texts, the first and last line shown (None: all of it)."""
    topic: str
    lines: tuple[int, int | None] | None = None

    def covers(self, other: "Mark") -> bool:
        if self.topic != other.topic:
            return False
        if self.lines is None:
            return True
        if other.lines is None:
            return False
        (a0, a1), (b0, b1) = self.lines, other.lines
        return a0 <= b0 and (a1 is None or (b1 is not None and b1 <= a1))


@dataclass
class _Item:
    index: int  # position in the message list
    tool: str
    mark: Mark | None
    call_id: str
    arguments: bool  # the call's arguments in the assistant message (else its answer)
    stubbed: bool = False


def _chars(obj: Any) -> int:
    return len(json.dumps(obj, ensure_ascii=False, default=str))


def output_stub(tool: str, text: str, why: str) -> str:
    """The short text that replaces a tool output: the tool, its size, its first lines
    that say what it was (an evaluation keeps its status and score)."""
    lines = text.splitlines()
    keep = [ln for ln in lines if ln.startswith(("status:", "failure:", "score:"))][:3] \
        if tool == "evaluate" else lines[:1]
    gist = " | ".join(s[:200] for s in keep)
    return f"[{why}: {tool} output of {len(text)} characters removed; it said: {gist}]"


def args_stub(raw: str, why: str) -> str:
    """Call arguments (JSON) with every long string replaced by a note; valid JSON."""
    try:
        args = json.loads(raw)
    except ValueError:
        return json.dumps({"note": f"[{why}: {len(raw)} characters removed]"})
    if not isinstance(args, dict):
        return raw
    return json.dumps({k: (f"[{why}: {len(v)} characters removed]"
                           if isinstance(v, str) and len(v) > LONG_ARG else v)
                       for k, v in args.items()})


@dataclass
class Context:
    """The bookkeeping beside a session's message list (the list itself stays plain)."""
    budget_tokens: int
    items: list[_Item] = field(default_factory=list)
    stubbed: int = 0  # items stubbed so far
    _reported: int | None = None  # prompt tokens the server reported for the last request
    _chars_then: int = 0  # characters of the request it reported on

    def add(self, messages: list[dict[str, Any]], tool: str, call_id: str, raw_args: str,
            mark: Mark | None) -> None:
        """Register a call just answered (its answer is the last message): the answer, and
        its arguments when they are long. A marked call first stubs the older items that
        its mark covers."""
        if mark is not None:
            for it in self.items:
                if not it.stubbed and it.mark is not None and mark.covers(it.mark):
                    self._stub(messages, it, "superseded by a newer " + tool)
        if len(raw_args) > LONG_ARG:
            where = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
            self.items.append(_Item(where, tool, mark, call_id, arguments=True))
        self.items.append(_Item(len(messages) - 1, tool, mark, call_id,
                                arguments=False))

    def _stub(self, messages: list[dict[str, Any]], it: _Item, why: str) -> None:
        msg = messages[it.index]
        if not it.arguments:
            msg["content"] = output_stub(it.tool, str(msg.get("content") or ""), why)
        else:
            for tc in msg.get("tool_calls") or []:
                if tc.get("id") == it.call_id:
                    fn = tc["function"]
                    fn["arguments"] = args_stub(fn.get("arguments") or "", why)
        it.stubbed = True
        self.stubbed += 1

    def estimate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
        now = _chars(messages) + _chars(tools)
        if self._reported is not None:
            return max(0, self._reported + (now - self._chars_then) // CHARS_PER_TOKEN)
        return now // CHARS_PER_TOKEN

    def reported(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                 prompt_tokens: int | None) -> None:
        """The server's prompt size for the request just sent (None: it sent none)."""
        self._reported = prompt_tokens
        self._chars_then = _chars(messages) + _chars(tools)

    def fit(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
        """Stub the oldest items until the estimate is under the budget (the newest batch of
        tool answers stays); returns the estimate of the request as it will be sent."""
        est = self.estimate(messages, tools)
        if not self.budget_tokens or est <= self.budget_tokens:
            return est
        last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"),
                             default=len(messages))
        for it in self.items:
            if est <= self.budget_tokens:
                break
            if it.stubbed or it.index >= last_assistant:
                continue
            self._stub(messages, it, "removed to fit the context budget")
            est = self.estimate(messages, tools)
        return est
