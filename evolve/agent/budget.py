"""Budgets of the agent operator: per session (tool calls, evaluations, tokens: the
--max-tool-calls / --max-evaluations / --max-session-tokens flags) and per run (USD
against the model's price, cached prompt tokens at the cached rate; a model without a
price counts tokens only, and `pricing.require_price` keeps such a model out of a run
with --max-usd). What earlier and open sessions spent comes from the store, where each
request's spend is written as it happens."""

from __future__ import annotations

from dataclasses import dataclass

from evolve.agent.pricing import Price


class BudgetExhausted(Exception):
    """A session budget (tool calls, tokens) or the run's USD budget ran out."""


@dataclass
class SessionBudget:
    max_tool_calls: int
    max_evaluations: int
    max_tokens: int
    tool_calls: int = 0
    evaluations: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def check_tokens(self) -> None:
        if self.max_tokens and self.tokens >= self.max_tokens:
            raise BudgetExhausted(f"session token budget used up "
                                  f"({self.tokens} of {self.max_tokens})")

    def take_tool_call(self) -> None:
        if self.max_tool_calls and self.tool_calls >= self.max_tool_calls:
            raise BudgetExhausted(f"session tool-call budget used up "
                                  f"({self.tool_calls} of {self.max_tool_calls})")
        self.tool_calls += 1

    def evaluations_left(self) -> int:
        return max(0, self.max_evaluations - self.evaluations)

    def tool_calls_left(self) -> int:
        return max(0, self.max_tool_calls - self.tool_calls)

    def describe(self) -> str:
        return (f"{self.max_tool_calls} tool calls, {self.max_evaluations} evaluations, "
                f"{self.max_tokens} tokens (prompt + completion, summed over requests)")


@dataclass
class RunBudget:
    """USD over the whole run: what earlier sessions spent (from the store) + this one."""

    price: Price | None  # None: the model is not in the price table, tokens are counted only
    max_usd: float | None
    spent_before: float = 0.0

    def cost(self, tokens_in: int, tokens_out: int, cached_in: int = 0) -> float:
        return (self.price.cost(tokens_in, tokens_out, cached_in)
                if self.price is not None else 0.0)

    def check(self, session_cost: float = 0.0) -> None:
        """Raise when the run's spend reached max_usd (never for unpriced models)."""
        if self.max_usd is None or self.price is None:
            return
        total = self.spent_before + session_cost
        if total >= self.max_usd:
            raise BudgetExhausted(f"run budget of ${self.max_usd:.2f} reached "
                                  f"(${total:.4f} spent)")
