"""`evolve llm check`: is this endpoint ready for the agent operator?

One tiny tool call, streamed, the way a run makes it (`evolve.agent.client`), and a look
at the server's model list. Reports: reachable, tools supported, streaming supported,
which API answered, the context length where the server says (vLLM `max_model_len`,
llama.cpp `n_ctx_train`, others' `context_length`/`context_window`), price known or not.
Exit 0 when a run can use it, 1 when not (the server's own words say why).
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import openai
import typer

from evolve.agent.client import APIS, AgentAPIError, EndpointFatal, ModelClient
from evolve.agent.endpoint_errors import describe
from evolve.agent.pricing import PriceTableError, model_price
from evolve.config import AgentConfig
from evolve.commands import usage_error
from evolve.report import make_console

CHECK_TIMEOUT_S = 120.0
CHECK_WAIT_S = 20.0
PING = {"type": "function", "function": {
    "name": "ping", "description": "Answer the check: call this with word='pong'.",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}},
                   "required": ["word"]}}}
PROMPT = [{"role": "system", "content": "You are being tested. Call the ping tool."},
          {"role": "user", "content": "Call ping with word 'pong'. Do not answer in text."}]
_CTX_KEYS = ("max_model_len", "context_length", "context_window", "max_context_length",
             "n_ctx", "n_ctx_train")


@dataclass
class CheckReport:
    base_url: str
    model: str
    reachable: bool = False
    api: str | None = None
    tools: bool = False
    streaming: bool = False
    context: int | None = None
    price: str = "unknown"
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reachable and self.tools and self.streaming


def _context_length(entry: dict[str, Any]) -> int | None:
    for source in (entry, entry.get("meta") or {}):
        for k in _CTX_KEYS:
            if isinstance(source.get(k), int) and source[k] > 0:
                return int(source[k])
    return None


def _models(client: openai.OpenAI) -> list[dict[str, Any]]:
    return [m.model_dump() for m in client.models.list()]


def run_check(base_url: str | None, model: str | None, api: str,
              table: Path | None = None) -> CheckReport:
    url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    raw = openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                        base_url=url, timeout=30.0, max_retries=0)
    rep = CheckReport(str(raw.base_url).rstrip("/"), model or "")
    try:
        listed = _models(raw)
        rep.reachable = True
    except openai.OpenAIError as e:
        listed = []
        rep.notes.append(f"model list: {describe(e)}")
    if not rep.model:
        rep.model = listed[0]["id"] if url and listed else AgentConfig.model
    entry = next((m for m in listed if m.get("id") == rep.model), None)
    if listed and entry is None:
        rep.notes.append(f"{rep.model!r} is not in the server's model list: "
                         + ", ".join(m.get("id", "?") for m in listed[:5]))
    rep.context = _context_length(entry) if entry else None
    try:
        price = model_price(rep.model, table, None)
        if price is not None:
            cached = "" if price.cached_input_per_mtok is None \
                else f", cached ${price.cached_input_per_mtok:g}"
            rep.price = (f"${price.input_per_mtok:g} in{cached}, "
                         f"${price.output_per_mtok:g} out per M tokens")
    except PriceTableError as e:
        rep.notes.append(str(e))
    client = ModelClient(rep.model, url, api=api, request_limit_s=CHECK_TIMEOUT_S,
                         max_wait_s=CHECK_WAIT_S, backoff_s=1.0,
                         on_switch=lambda new, why: rep.notes.append(
                             f"switched to the {new} API: {why}"))
    try:
        comp = client.complete(PROMPT, [PING])
    except (EndpointFatal, AgentAPIError) as e:
        rep.api = client.api
        rep.notes.append(f"streamed tool call failed: {e}")
        _without_tools(client, raw, rep)
        return rep
    rep.reachable = rep.streaming = True
    rep.api = comp.api
    calls = [c for c in comp.tool_calls if c.name == "ping"]
    rep.tools = bool(calls)
    if not rep.tools:
        rep.notes.append("the model answered in text, not with a tool call: "
                         + json.dumps((comp.content or "")[:120]))
    return rep


def _without_tools(client: ModelClient, raw: openai.OpenAI, rep: CheckReport) -> None:
    """After a failed streamed tool call: does a streamed request without tools work, or
    at least a plain one?"""
    plain = [{"role": "user", "content": "Say ok."}]
    try:
        client.complete(plain, [])
        rep.reachable = rep.streaming = True
        rep.notes.append("a streamed request without tools works: the server refuses "
                         "tools as it is set up")
        return
    except (EndpointFatal, AgentAPIError):
        pass
    try:
        if rep.api == "responses":
            raw.responses.create(model=rep.model, input="Say ok.", store=False)
        else:
            raw.chat.completions.create(model=rep.model, messages=plain)
        rep.reachable = True
        rep.notes.append("only a plain request (no tools, not streamed) works")
    except openai.OpenAIError as e:
        rep.notes.append(f"a plain request fails too: {describe(e)}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def check(
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL (default: "
                                           "OPENAI_BASE_URL, else OpenAI)"),
    model: Optional[str] = typer.Option(None, help="model name (default: the server's first "
                                        "model on a custom URL, else " + AgentConfig.model
                                        + ")"),
    api: str = typer.Option("auto", help="auto | chat | responses (as on evolve start)"),
    price_table: Optional[Path] = typer.Option(None, help="price table file"),
) -> None:
    """Send one tiny tool call and say whether a run can use this endpoint: reachable,
    tools, streaming, which API, context length, price."""
    if api not in APIS:
        usage_error(f"unknown --api {api!r} (auto, chat or responses)")
    if not (os.environ.get("OPENAI_API_KEY") or base_url or os.environ.get("OPENAI_BASE_URL")):
        usage_error("set OPENAI_API_KEY or give --base-url")
    rep = run_check(base_url, model, api, price_table)
    console = make_console()

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    say(f"endpoint   {rep.base_url}")
    say(f"model      {rep.model}")
    say(f"reachable  {_yes(rep.reachable)}")
    say(f"api        {rep.api or '-'}")
    say(f"tools      {_yes(rep.tools)}")
    say(f"streaming  {_yes(rep.streaming)}")
    say("context    " + (f"{rep.context} tokens" if rep.context else "not reported"))
    say(f"price      {rep.price}" + ("" if rep.price != "unknown" else
                                     " (with --max-usd, give --price IN,OUT)"))
    for note in rep.notes:
        say(textwrap.fill(f"note: {note}", 80, subsequent_indent="  ",
                          break_on_hyphens=False, break_long_words=False))
    say("ready for evolve start --operator agent" if rep.ok else
        "NOT ready: fix the above (README: Pointing it at an LLM)")
    raise typer.Exit(0 if rep.ok else 1)


def register(app: typer.Typer) -> None:
    llm = typer.Typer(help="Check a model endpoint for the agent operator.",
                      no_args_is_help=True)
    llm.command("check")(check)
    app.add_typer(llm, name="llm")
