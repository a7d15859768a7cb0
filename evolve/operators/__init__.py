"""Variation operators: `offline` (per-class CONFIG moves, crossovers and source recipes,
picked by a bandit over what paid in the run) and `agent`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evolve.operators.base import Operator, OperatorError, VariationContext

if TYPE_CHECKING:  # pragma: no cover
    from evolve.run import RunHandle

__all__ = ["Operator", "OperatorError", "VariationContext", "make_operator"]


def make_operator(name: str, run: "RunHandle") -> Operator:
    if name == "offline":
        from evolve.operators.offline import OfflineOperator
        return OfflineOperator()
    if name == "agent":
        from evolve.agent.operator import AgentOperator
        return AgentOperator(run)
    raise OperatorError(f"unknown operator {name!r} (choose from offline, agent)")
