"""Tool registry for the agent: JSON schemas, argument validation, truncation, dispatch.

A tool is a name, a description, a JSON-schema `parameters` object and a handler
`(state, args) -> str | Marked`: a `Marked` text says what it shows (a `context.Mark`), so
that a newer output can supersede it in the session's context (`evolve.agent.context`).
Whatever goes wrong in a call (bad JSON, unknown tool, invalid arguments, a handler's
ToolError) becomes an `error: ...` text for the model — never an exception that ends the
session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from evolve.agent.context import Mark

DEFAULT_LIMIT = 6000


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


@dataclass(frozen=True)
class Marked:
    """A handler's answer that a newer answer with a covering mark supersedes."""
    text: str
    mark: Mark


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[[Any, dict[str, Any]], "str | Marked"]
    limit: int = DEFAULT_LIMIT  # characters of output kept

    def schema(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": self.parameters}}


@dataclass
class ToolOutcome:
    text: str  # what the model sees (already truncated)
    ok: bool  # False for errors (bad arguments, unknown tool, ToolError)
    arguments: dict[str, Any] | None  # parsed arguments, None when unparsable
    mark: Mark | None = None  # what the output shows (ok outputs of tools with a mark)


def truncate(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """Keep the head and the tail; say how much was cut."""
    if len(text) <= limit:
        return text
    keep_tail = limit // 4
    keep_head = limit - keep_tail
    cut = len(text) - keep_head - keep_tail
    return (text[:keep_head] + f"\n[... truncated {cut} of {len(text)} characters ...]\n"
            + text[-keep_tail:])


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,),
}


def _check_value(name: str, value: Any, spec: dict[str, Any]) -> None:
    types = spec.get("type")
    if types is not None:
        tlist = types if isinstance(types, list) else [types]
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number")
                 and isinstance(value, bool)) for t in tlist)
        if not ok:
            raise ToolError(f"argument '{name}' must be {' or '.join(tlist)}, "
                            f"got {type(value).__name__}")
    if "enum" in spec and value not in spec["enum"]:
        raise ToolError(f"argument '{name}' must be one of {spec['enum']}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            raise ToolError(f"argument '{name}' must be >= {spec['minimum']}")
        if "maximum" in spec and value > spec["maximum"]:
            raise ToolError(f"argument '{name}' must be <= {spec['maximum']}")
    if isinstance(value, str) and "minLength" in spec and len(value) < spec["minLength"]:
        raise ToolError(f"argument '{name}' must not be empty")


def validate(schema: dict[str, Any], args: Any) -> dict[str, Any]:
    """Check parsed arguments against an object schema; returns them with defaults."""
    if not isinstance(args, dict):
        raise ToolError("arguments must be a JSON object")
    props: dict[str, Any] = schema.get("properties", {})
    missing = [r for r in schema.get("required", []) if r not in args]
    if missing:
        raise ToolError(f"missing required argument(s): {', '.join(missing)}")
    extra = [k for k in args if k not in props]
    if extra and schema.get("additionalProperties", True) is False:
        raise ToolError(f"unknown argument(s): {', '.join(extra)}; "
                        f"expected: {', '.join(props) or 'none'}")
    out = {}
    for k, spec in props.items():
        if k in args and args[k] is not None:
            _check_value(k, args[k], spec)
            out[k] = args[k]
        elif "default" in spec:
            out[k] = spec["default"]
    return out


class ToolRegistry:
    def __init__(self, tools: list[Tool]):
        self.tools = {t.name: t for t in tools}

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]

    def dispatch(self, state: Any, name: str, raw_arguments: str) -> ToolOutcome:
        tool = self.tools.get(name)
        if tool is None:
            return ToolOutcome(f"error: unknown tool {name!r}; available tools: "
                               f"{', '.join(self.tools)}", False, None)
        try:
            parsed = json.loads(raw_arguments) if raw_arguments.strip() else {}
        except json.JSONDecodeError as e:
            return ToolOutcome(f"error: the arguments of {name} are not valid JSON ({e.msg} at "
                               f"position {e.pos}); send a JSON object matching the schema",
                               False, None)
        try:
            args = validate(tool.parameters, parsed)
            out = tool.handler(state, args)
            if isinstance(out, Marked):
                return ToolOutcome(truncate(out.text, tool.limit), True, args, out.mark)
            return ToolOutcome(truncate(out, tool.limit), True, args)
        except Exception as e:  # a bug in a tool must not end the run either
            text = f"error: {e}" if isinstance(e, ToolError) else \
                f"error: tool {name} failed internally ({type(e).__name__}: {e})"
            return ToolOutcome(truncate(text), False, parsed if isinstance(parsed, dict) else None)
