"""One agent session: the conversation loop from brief to submit / give_up / budget / error.

The loop asks the model, runs the tool calls it returns (errors go back to the model
as text), records every step, and stops on submit, give_up, a spent budget, an
endpoint failure (after the client's retries) or a second answer without tools.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from evolve.agent.budget import BudgetExhausted, RunBudget
from evolve.agent.client import AgentAPIError, ChatClient
from evolve.agent.state import SessionState
from evolve.agent.tools import ToolRegistry
from evolve.records import AgentStep, SessionRecord, utc_now

SUMMARY_LIMIT = 20000  # characters of a step's text kept in agent_steps
LOW_WATER = 3  # warn the model when this few tool calls / evaluations remain


@dataclass
class SessionResult:
    record: SessionRecord
    steps: list[AgentStep]
    state: SessionState
    cost_usd: float | None
    seconds: float
    knowledge: list[str] = field(default_factory=list)


class Session:
    def __init__(self, client: ChatClient, registry: ToolRegistry, state: SessionState,
                 run_budget: RunBudget, *, system: str, brief: str, nudge: str,
                 operator: str = "agent"):
        self.client = client
        self.registry = registry
        self.state = state
        self.run_budget = run_budget
        self.nudge = nudge
        self.operator = operator
        self.id = f"s-{uuid.uuid4().hex[:12]}"
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": system},
                                               {"role": "user", "content": brief}]
        self.steps: list[AgentStep] = []
        self.cost: float | None = 0.0 if run_budget.priced else None
        self._last_prompt = 0  # prompt tokens of the latest request
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

    def _add_cost(self, tokens_in: int, tokens_out: int) -> None:
        c = self.run_budget.cost(tokens_in, tokens_out)
        if c is not None:
            self.cost = (self.cost or 0.0) + c

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
    def run(self) -> SessionResult:
        t0 = time.monotonic()
        started = utc_now()
        outcome, reason = self._loop()
        st = self.state
        if st.ended:
            outcome = st.outcome or outcome
            reason = st.reason if st.outcome == "gave_up" else ""
        b = st.budget
        record = SessionRecord(
            id=self.id, parent_id=st.ctx.parent.id,
            parent2_id=st.ctx.second.id if st.ctx.second is not None else None,
            operator=self.operator, model=self.client.model, outcome=outcome, reason=reason,
            tool_calls=b.tool_calls, evaluations=b.evaluations, tokens_in=b.tokens_in,
            tokens_out=b.tokens_out, cost_usd=round(self.cost or 0.0, 6),
            started_at=started, ended_at=utc_now())
        return SessionResult(record, self.steps, st, self.cost, time.monotonic() - t0,
                             list(st.knowledge_read))

    def _loop(self) -> tuple[str, str]:
        st, b = self.state, self.state.budget
        nudged = False
        while not st.ended:
            try:
                b.check_tokens()
                self.run_budget.check(self.cost)
            except BudgetExhausted as e:
                self._step(role="user", tool=None, args={}, summary=f"stopped: {e}")
                return "budget", str(e)
            try:
                comp = self.client.complete(self.messages, self.registry.schemas())
            except AgentAPIError as e:
                self._step(role="user", tool=None, args={"attempts": e.attempts},
                           summary=f"endpoint error: {e}")
                return "error", str(e)
            b.add_tokens(comp.usage.tokens_in, comp.usage.tokens_out)
            self._last_prompt = comp.usage.tokens_in
            self._add_cost(comp.usage.tokens_in, comp.usage.tokens_out)
            self.messages.append(comp.as_message())
            self._step(role="assistant", tool=None,
                       args={"tool_calls": [c.name for c in comp.tool_calls],
                             "attempts": comp.attempts, "usage_estimated": comp.usage.estimated},
                       summary=comp.content or "", tokens_in=comp.usage.tokens_in,
                       tokens_out=comp.usage.tokens_out, latency=comp.latency_s)
            if not comp.tool_calls:
                if nudged:
                    return "no_tools", "the model answered twice without calling a tool"
                nudged = True
                self.messages.append({"role": "user", "content": self.nudge})
                self._step(role="user", tool=None, args={}, summary=self.nudge)
                continue
            for i, call in enumerate(comp.tool_calls):
                if st.ended:  # calls after submit/give_up are answered, not run
                    self._answer(call.id, call.name, call.arguments,
                                 "error: the session already ended", 0.0)
                    continue
                try:
                    b.take_tool_call()
                except BudgetExhausted as e:
                    for rest in comp.tool_calls[i:]:
                        self._answer(rest.id, rest.name, rest.arguments, f"error: {e}", 0.0)
                    return "budget", str(e)
                t = time.monotonic()
                out = self.registry.dispatch(st, call.name, call.arguments)
                text = out.text + ("" if st.ended else self._budget_note())
                self._answer(call.id, call.name,
                             out.arguments if out.arguments is not None else call.arguments,
                             text, time.monotonic() - t)
            try:  # stop as soon as the spend crosses the line, not at the next request
                self.run_budget.check(self.cost)
            except BudgetExhausted as e:
                if not st.ended:
                    self._step(role="user", tool=None, args={}, summary=f"stopped: {e}")
                    return "budget", str(e)
        return st.outcome or "submitted", st.reason

    def _answer(self, call_id: str, name: str, args: Any, text: str, latency: float) -> None:
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        self._step(role="tool", tool=name, args=args, summary=text, latency=latency)
