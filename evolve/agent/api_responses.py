"""The Responses API adapter: `/v1/responses`, streamed, function tools.

State mode: **`store=False`, the whole input sent with every request** (not
`previous_response_id`). Why: the session trims its history to fit the context budget,
and a server-side chain would keep everything it was ever sent; a request is then
self-contained, so a retry after a lost stream repeats exactly the same request; it
works where the server keeps nothing (zero-data-retention keys, local servers). A
reasoning model's thinking is still carried between tool calls: on OpenAI's own
endpoint `include=["reasoning.encrypted_content"]` is asked for (the client drops it
when a model that does not reason refuses it), and the reasoning
items that come back are kept (without their ids, which a store-less server cannot
resolve) in the assistant message under `_reasoning`, and sent back before the calls
they led to.

Messages arrive in Chat Completions form (the session's): the first system message
becomes `instructions`, user/system messages input messages, an assistant message its
reasoning items + text + `function_call` items, a `tool` message a
`function_call_output`. Tools are sent as Responses function tools with `strict: false`
(Responses makes them strict by default, which our optional arguments do not meet).
"""

from __future__ import annotations

from typing import Any

import openai

from evolve.agent.completion import Reply, ToolCall, Usage, Watch

NAME = "responses"
_DELTAS = ("response.output_text.delta", "response.function_call_arguments.delta",
           "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
           "response.refusal.delta")


class StreamFailed(openai.APIError):
    """The stream said the response failed (`response.failed` / `error` event)."""


def tools_for(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        f = t.get("function", t)
        out.append({"type": "function", "name": f["name"],
                    "description": f.get("description", ""),
                    "parameters": f.get("parameters", {"type": "object", "properties": {}}),
                    "strict": False})
    return out


def to_input(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """(instructions, input items) for Chat-Completions-form messages."""
    instructions = None
    items: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "system" and instructions is None and not items:
            instructions = str(m.get("content") or "")
        elif role in ("system", "user"):
            items.append({"role": role, "content": str(m.get("content") or "")})
        elif role == "assistant":
            items += m.get("_reasoning") or []
            if m.get("content"):
                items.append({"role": "assistant", "content": str(m["content"])})
            for tc in m.get("tool_calls") or []:
                items.append({"type": "function_call", "call_id": tc["id"],
                              "name": tc["function"]["name"],
                              "arguments": tc["function"]["arguments"] or "{}"})
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": m.get("tool_call_id"),
                          "output": str(m.get("content") or "")})
    return instructions, items


def request(client: openai.OpenAI, model: str, messages: list[dict[str, Any]],
            tools: list[dict[str, Any]], effort: str | None, watch: Watch, *,
            encrypted_reasoning: bool = False) -> Reply:
    instructions, items = to_input(messages)
    kw: dict[str, Any] = {}
    if instructions is not None:
        kw["instructions"] = instructions
    if tools:
        kw["tools"] = tools_for(tools)
    if effort:
        kw["reasoning"] = {"effort": effort}
    if encrypted_reasoning:
        kw["include"] = ["reasoning.encrypted_content"]
    stream = client.responses.create(model=model, input=items, store=False, stream=True, **kw)
    final = None
    try:
        for ev in stream:
            kind = getattr(ev, "type", "")
            watch.got(getattr(ev, "delta", None) if kind in _DELTAS else None)
            if kind in ("response.completed", "response.incomplete"):
                final = ev.response
            elif kind == "response.failed":
                err = getattr(ev.response, "error", None)
                raise StreamFailed(getattr(err, "message", None) or "the response failed",
                                   request=stream.response.request,
                                   body={"message": getattr(err, "message", ""),
                                         "code": getattr(err, "code", "")})
            elif kind == "error":
                raise StreamFailed(getattr(ev, "message", "") or "stream error",
                                   request=stream.response.request,
                                   body={"message": getattr(ev, "message", ""),
                                         "code": getattr(ev, "code", "")})
    finally:
        stream.close()
    if final is None:
        raise openai.APIConnectionError(message="the stream ended before the response was "
                                        "complete", request=stream.response.request)
    return _reply(final)


def _reply(resp: Any) -> Reply:
    text: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[dict[str, Any]] = []
    for item in resp.output or []:
        if item.type == "message":
            text += [c.text for c in item.content or [] if getattr(c, "type", "") ==
                     "output_text"]
        elif item.type == "function_call":
            calls.append(ToolCall(id=item.call_id, name=item.name,
                                  arguments=item.arguments or ""))
        elif item.type == "reasoning" and getattr(item, "encrypted_content", None):
            reasoning.append({"type": "reasoning", "encrypted_content": item.encrypted_content,
                              "summary": [s.model_dump() for s in item.summary or []]})
    usage = None
    u = getattr(resp, "usage", None)
    if u is not None:
        details = getattr(u, "input_tokens_details", None)
        usage = Usage(int(u.input_tokens or 0), int(u.output_tokens or 0),
                      int(getattr(details, "cached_tokens", 0) or 0) if details else 0)
    return Reply("".join(text) or None, calls, usage,
                 {"_reasoning": reasoning} if reasoning else {})
