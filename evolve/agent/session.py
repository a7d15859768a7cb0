"""One agent session: the conversation loop from brief to submit / give_up / budget / error.

The loop asks the model, runs the tool calls it returns (errors go back to the model
as text), records every step, and stops on submit, give_up, a spent budget, an
endpoint failure (after the client's retries) or an answer without tools once
`max_nudges` nudges were spent (each such answer gets one). Before each request the
conversation is fitted to the context budget (agent/context.py: superseded tool outputs
become stubs at once, the oldest others when still over; the model's own text stays).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from evolve.agent.budget import BudgetExhausted, RunBudget
from evolve.agent.client import AgentAPIError, ChatClient, EndpointFatal, ToolCall, Usage
from evolve.agent.context import Context
from evolve.agent.handlers import SessionState
from evolve.agent.prompts import render
from evolve.agent.tools import ToolRegistry
from evolve.records import AgentStep, SessionRecord, utc_now

SUMMARY_LIMIT = 20000  # characters of a step's text kept in agent_steps
LOW_WATER = 3  # warn the model when this few tool calls remain


class Session:
    def __init__(self, client: ChatClient, registry: ToolRegistry, state: SessionState,
                 run_budget: RunBudget, *, system: str, brief: str, nudge: str,
                 max_nudges: int = 3, context_tokens: int = 100_000):
        self.client = client
        self.registry = registry
        self.state = state
        self.run_budget = run_budget
        self.nudge = nudge  # a template: {count}, {limit}
        self.max_nudges = max(0, max_nudges)
        self.nudges = 0
        self.context = Context(context_tokens)
        self.id = f"s-{uuid.uuid4().hex[:12]}"
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": system},
                                               {"role": "user", "content": brief}]
        self.steps: list[AgentStep] = []
        self.cost = 0.0  # USD of this session (stays 0 for an unpriced model)
        self._last_prompt = 0  # prompt tokens of the latest request
        self.fatal: EndpointFatal | None = None  # the run must stop (operator re-raises)
        self.started = utc_now()
        self._step(role="user", tool=None, args={}, summary=brief)

    # ---------------------------------------------------------------- recording
    def _step(self, *, role: str, tool: str | None, args: Any, summary: str,
              tokens_in: int = 0, tokens_out: int = 0, latency: float = 0.0) -> None:
        self.steps.append(AgentStep(
            session_id=self.id, step=len(self.steps), role=role, tool=tool,
            arguments_json=json.dumps(args if not isinstance(args, str) else {"raw": args},
                                      default=str),
            result_summary=summary[:SUMMARY_LIMIT], tokens_in=tokens_in,
            tokens_out=tokens_out, latency_s=round(latency, 4)))

    def _budget_note(self) -> str:
        b = self.state.budget
        notes = []
        if b.tool_calls_left() <= LOW_WATER:
            notes.append(f"{b.tool_calls_left()} tool call(s) left")
        left = b.max_tokens - b.tokens
        if b.max_tokens and left < max(b.max_tokens // 10, 3 * self._last_prompt):
            notes.append(f"about {max(0, left)} tokens left (your last request used "
                         f"{self._last_prompt})")
        if not notes:
            return ""
        return f"\n[budget: {', '.join(notes)}; finish with submit or give_up soon]"

    # --------------------------------------------------------------------- loop
    def run(self) -> SessionRecord:
        """Talk until the session ends; the record (steps are in `self.steps`)."""
        self.started = utc_now()
        outcome, reason = self._loop()
        return self._record(outcome, reason)

    def _record(self, outcome: str, reason: str) -> SessionRecord:
        st, b = self.state, self.state.budget
        return SessionRecord(
            id=self.id, parent_id=st.ctx.parent.id,
            parent2_id=st.ctx.second.id if st.ctx.second is not None else None,
            operator="agent", model=self.client.model, outcome=outcome, reason=reason,
            tool_calls=b.tool_calls, evaluations=b.evaluations, tokens_in=b.tokens_in,
            tokens_out=b.tokens_out, cost_usd=round(self.cost, 6),
            started_at=self.started, ended_at=utc_now())

    def _post_spend(self) -> None:
        """The session so far (outcome `open`), stored at once: a killed run keeps its
        spend, and the run's budget counts it (the final record replaces this row)."""
        self.state.ctx.run.writer.record_session(self._record("open", "in progress"), [])

    def _count(self, usage: Usage | None) -> None:
        """A request's tokens and cost into the session's totals."""
        if usage is None:
            return
        b = self.state.budget
        b.tokens_in += usage.tokens_in
        b.tokens_out += usage.tokens_out
        self.cost += self.run_budget.cost(usage.tokens_in, usage.tokens_out, usage.cached_in)

    def _loop(self) -> tuple[str, str]:
        st, b = self.state, self.state.budget
        try:
            while not st.ended:
                b.check_tokens()
                self.run_budget.check(self.cost)
                tools = self.registry.schemas()
                sent = self.context.fit(self.messages, tools)
                comp = self.client.complete(self.messages, tools)
                usage = comp.usage
                self._count(usage)
                self._last_prompt = usage.tokens_in
                self._post_spend()
                self.context.reported(self.messages, tools,
                                      None if usage.estimated else usage.tokens_in)
                self.messages.append(comp.as_message())
                self._step(role="assistant", tool=None,
                           args={"tool_calls": [c.name for c in comp.tool_calls],
                                 "attempts": comp.attempts, "usage_estimated": usage.estimated,
                                 "cached_in": usage.cached_in, "api": comp.api,
                                 "context_estimate": sent, "stubbed": self.context.stubbed},
                           summary=comp.content or "", tokens_in=usage.tokens_in,
                           tokens_out=usage.tokens_out, latency=comp.latency_s)
                if not comp.tool_calls:
                    if self.nudges >= self.max_nudges:
                        return "no_tools", (f"the model answered without calling a tool "
                                            f"{self.nudges + 1} time(s) (nudge limit "
                                            f"{self.max_nudges})")
                    self.nudges += 1
                    text = render(self.nudge, {"count": self.nudges, "limit": self.max_nudges})
                    self.messages.append({"role": "user", "content": text})
                    self._step(role="user", tool=None, args={"nudge": self.nudges}, summary=text)
                    continue
                self._run_calls(comp.tool_calls)
        except BudgetExhausted as e:
            self._step(role="user", tool=None, args={}, summary=f"stopped: {e}")
            return "budget", str(e)
        except AgentAPIError as e:
            self._count(e.usage)  # its lost attempts were billed
            self._step(role="user", tool=None, args={"attempts": e.attempts},
                       summary=f"endpoint error: {e}")
            return "error", str(e)
        except EndpointFatal as e:
            self._count(e.usage)
            self._step(role="user", tool=None, args={}, summary=f"endpoint error: {e}")
            self.fatal = e
            return "error", str(e)
        return st.outcome, st.reason

    def _run_calls(self, calls: list[ToolCall]) -> None:
        """Run one response's tool calls in order; every call gets an answer, also those
        after submit/give_up or past the tool-call budget (which then raises)."""
        st = self.state
        for i, call in enumerate(calls):
            if st.ended:
                self._answer(call, "error: the session already ended")
                continue
            try:
                st.budget.take_tool_call()
            except BudgetExhausted as e:
                for rest in calls[i:]:
                    self._answer(rest, f"error: {e}")
                raise
            t = time.monotonic()
            out = self.registry.dispatch(st, call.name, call.arguments)
            text = out.text + ("" if st.ended else self._budget_note())
            self._answer(call, text, out.arguments, time.monotonic() - t)
            self.context.add(self.messages, call.name, call.id, call.arguments, out.mark)

    def _answer(self, call: ToolCall, text: str, args: dict[str, Any] | None = None,
                latency: float = 0.0) -> None:
        # recorded with the parsed arguments when there are any, else the raw text sent
        self.messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        self._step(role="tool", tool=call.name, args=call.arguments if args is None else args,
                   summary=text, latency=latency)
