"""The Chat Completions adapter: `/v1/chat/completions`, streamed, usage included.

Messages go out as they are (the session's form), minus the keys that start with "_"
(another adapter's opaque state). Tool-call arguments arrive as deltas by index; usage
arrives in the last chunk because `stream_options.include_usage` is asked for.
Reasoning effort is sent only when set (`reasoning_effort`); nothing else optional is
sent (no temperature, no max_tokens: reasoning models reject them).
"""

from __future__ import annotations

from typing import Any

import openai

from evolve.agent.completion import Reply, ToolCall, Usage, Watch

NAME = "chat"


def clean(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if not k.startswith("_")} for m in messages]


def request(client: openai.OpenAI, model: str, messages: list[dict[str, Any]],
            tools: list[dict[str, Any]], effort: str | None, watch: Watch) -> Reply:
    kw: dict[str, Any] = {}
    if tools:
        # tool_choice is left out: "auto" is the default when tools are given, and some
        # local servers reject an explicit value without extra flags
        kw["tools"] = tools
    if effort:
        kw["reasoning_effort"] = effort
    stream = client.chat.completions.create(
        model=model, messages=clean(messages), stream=True,
        stream_options={"include_usage": True}, **kw)
    content: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage = None
    finished = False
    try:
        for chunk in stream:
            watch.got(None)
            if getattr(chunk, "usage", None) is not None:
                usage = chunk.usage
            for choice in chunk.choices or []:
                finished = finished or bool(choice.finish_reason)
                d = choice.delta
                if d is None:
                    continue
                if d.content:
                    content.append(d.content)
                    watch.got(d.content)
                watch.got(getattr(d, "reasoning_content", None)
                          or getattr(d, "reasoning", None))
                for tc in d.tool_calls or []:
                    slot = calls.setdefault(tc.index if tc.index is not None else len(calls),
                                            {"id": "", "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
                        watch.got(tc.function.arguments)
    finally:
        stream.close()
    if not finished:
        raise openai.APIConnectionError(message="the stream ended before the answer was "
                                        "complete", request=stream.response.request)
    tool_calls = [ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
                  for i, c in sorted(calls.items()) if c["name"]]
    return Reply("".join(content) or None, tool_calls, _usage(usage))


def _usage(u: Any) -> Usage | None:
    if u is None or u.prompt_tokens is None:
        return None
    details = getattr(u, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return Usage(int(u.prompt_tokens or 0), int(u.completion_tokens or 0), cached)
