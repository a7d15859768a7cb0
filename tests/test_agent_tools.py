"""Tool registry, validation, truncation, pricing and prompt files (no server needed)."""

from __future__ import annotations

import json

import pytest

from evolve.agent.handlers import build_registry
from evolve.agent.pricing import PriceTable, PriceTableError
from evolve.agent.prompts import Prompts, PromptError, render, tool_lines
from evolve.agent.tools import Tool, ToolError, ToolRegistry, truncate, validate

SPEC_TOOLS = ["lineage", "show_candidate", "diff", "search_knowledge", "read_knowledge",
              "read_kernel", "write_kernel", "edit_kernel", "evaluate", "compile_info", "profile",
              "submit", "give_up"]


def test_exact_tool_names_and_schemas():
    reg = build_registry()
    assert sorted(reg.tools) == sorted(SPEC_TOOLS)
    for s in reg.schemas():
        assert s["type"] == "function"
        params = s["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        json.dumps(s)  # serialisable
    lineage = reg.tools["lineage"].parameters["properties"]["view"]
    assert lineage["enum"] == ["top", "recent", "failures"]


def test_validation_messages():
    reg = build_registry()
    schema = reg.tools["lineage"].parameters
    assert validate(schema, {"view": "top"}) == {"view": "top", "n": 8}
    with pytest.raises(ToolError, match="must be one of"):
        validate(schema, {"view": "best"})
    with pytest.raises(ToolError, match="missing required"):
        validate(schema, {"n": 3})
    with pytest.raises(ToolError, match="must be integer"):
        validate(schema, {"view": "top", "n": "3"})
    with pytest.raises(ToolError, match="unknown argument"):
        validate(schema, {"view": "top", "colour": 1})
    with pytest.raises(ToolError, match=">= 1"):
        validate(schema, {"view": "top", "n": 0})


def test_dispatch_turns_errors_into_text():
    reg = build_registry()
    out = reg.dispatch(None, "rm_rf", "{}")
    assert not out.ok and "unknown tool 'rm_rf'" in out.text and "submit" in out.text
    out = reg.dispatch(None, "edit_kernel", '{"old": "x", "new": ')
    assert not out.ok and "not valid JSON" in out.text
    out = reg.dispatch(None, "edit_kernel", '{"old": "x"}')
    assert not out.ok and "missing required argument(s): new" in out.text


def test_dispatch_truncates_long_tool_output():
    reg = ToolRegistry([Tool("big", "d", {"type": "object", "properties": {}},
                             lambda st, a: "x" * 9000 + "END")])
    out = reg.dispatch(None, "big", "")
    assert out.ok and len(out.text) < 6100 and out.text.endswith("END")
    assert "[... truncated 3003 of 9003 characters ...]" in out.text
    assert truncate("short", 6000) == "short"


def test_price_table(tmp_path):
    table = PriceTable.load()
    assert table.lookup("gpt-4.1-mini").cost(1_000_000, 0) == pytest.approx(0.40)
    assert table.lookup("gpt-4.1-mini-2025-04-14").cost(0, 1_000_000) == pytest.approx(1.60)
    assert table.lookup("gpt-5.1-codex-mini") is None  # not priced as gpt-5.1-codex
    assert table.lookup("my-local-llama") is None
    p = tmp_path / "prices.json"
    p.write_text(json.dumps({"m": {"input_per_mtok": 1, "output_per_mtok": 2}}))
    assert PriceTable.load(p).lookup("m").cost(500_000, 500_000) == pytest.approx(1.5)
    p.write_text(json.dumps({"m": {"input_per_mtok": 1}}))
    with pytest.raises(PriceTableError, match="output_per_mtok"):
        PriceTable.load(p)


def test_prompts_default_and_override(tmp_path):
    default = Prompts.load()
    for needle in ("try/except", "subprocess", "ctypes", "inspect", "open()", "streams",
                   "CONFIG", "{tools}", "Critique", "submit", "give_up"):
        assert needle in default.system, needle
    lines = tool_lines(build_registry()).splitlines()
    assert len(lines) == len(SPEC_TOOLS)
    assert any(ln.startswith("- read_kernel(start?, end?): The current working copy")
               for ln in lines)
    assert any(ln.startswith("- submit(hypothesis): ") for ln in lines)
    assert "{parent_source}" in default.brief
    (tmp_path / "agent_nudge.md").write_text("CUSTOM NUDGE {x}")
    p = Prompts.load(tmp_path)
    assert p.nudge == "CUSTOM NUDGE {x}" and p.system == default.system
    with pytest.raises(PromptError):
        Prompts.load(tmp_path / "missing")
    assert render("a {x} {y} {'k': 1} {{z}}", {"x": 1}) == "a 1 {y} {'k': 1} {{z}}"
