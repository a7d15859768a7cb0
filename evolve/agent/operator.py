"""AgentOperator: one variation = one agent session on a working copy of the parent.

    op = AgentOperator(run)            # reads run.config.agent (an AgentConfig)
    child = op.propose(ctx)            # a Candidate, or None (gave up / budget / error)

The session and its steps are recorded through the store before propose() returns;
the Candidate carries `session_id`, and the loop writes it into the candidate's row
(`candidates.session_id = sessions.id` links a candidate to its transcript).

Verified work is never lost: a session that ends without submit for any reason but
give_up (answers without tools, a budget, an endpoint error) and had an evaluation pass
hands in its best such state (`SessionState.best_verified`), marked
`changes["agent"]["unsubmitted"]` with the outcome and reason (`Candidate.unsubmitted`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from evolve.agent.budget import BudgetExhausted, RunBudget, SessionBudget
from evolve.agent.client import ModelClient
from evolve.agent.handlers import SessionState, build_registry
from evolve.agent.pricing import PriceTableError, require_price
from evolve.agent.prompts import PromptError, Prompts, session_brief, system_prompt
from evolve.agent.session import Session
from evolve.operators.base import OperatorError, VariationContext
from evolve.records import Candidate, Event, SessionRecord


class AgentOperator:
    name = "agent"

    def __init__(self, run: Any):
        self.run = run
        self.cfg = run.config.agent
        try:
            self.prompts = Prompts.load(self.cfg.prompts_dir)
            self.price = require_price(self.cfg.model, self.cfg.price_table, self.cfg.price,
                                       self.cfg.max_usd)
            self.client = ModelClient.from_config(self.cfg, on_progress=self._progress,
                                                  on_switch=self._switched)
        except (PromptError, PriceTableError, ValueError) as e:
            raise OperatorError(str(e)) from None
        if self.cfg.api == "auto":  # an earlier switch of this run holds
            switches = run.store.events("api_switch")
            if switches:
                self.client.use_api(json.loads(switches[-1].data_json or "{}").get("api", "chat"))
        self.registry = build_registry()
        self.exhausted = False  # True once the run's USD budget is spent
        self.last_reason = ""  # why the last propose() returned None (the loop logs it)

    def _progress(self, line: str, urgent: bool) -> None:
        """The model's progress, to the run's console (a proposer's writer has `activity`)."""
        show = getattr(self.run.writer, "activity", None)
        if show is not None:
            show(line, urgent)

    def _switched(self, api: str, why: str) -> None:
        self._event("api_switch", f"the model endpoint asked for the {api} API: {why}"[:500],
                    {"api": api})

    def _event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self.run.writer.add_event(Event(kind=kind, message=message,
                                       data_json=json.dumps(data, default=str)))

    def propose(self, ctx: VariationContext) -> Candidate | None:
        run, cfg = self.run, self.cfg
        spent = float(run.store.totals().get("cost_usd") or 0.0)
        run_budget = RunBudget(self.price, cfg.max_usd, spent)
        self.last_reason = ""
        try:
            run_budget.check()
        except BudgetExhausted as e:
            self.last_reason = str(e)
            if not self.exhausted:
                self._event("warning", f"agent operator stopped: {e}", {"spent_usd": spent})
            self.exhausted = True
            return None
        budget = SessionBudget(cfg.max_tool_calls, cfg.max_evaluations, cfg.max_tokens)
        state = SessionState(ctx=ctx, source=ctx.parent_source, budget=budget)
        brief, plateau = session_brief(self.prompts, ctx, budget, cfg.stall_limit, spent)
        session = Session(self.client, self.registry, state, run_budget,
                          system=system_prompt(self.prompts, run, ctx.parent.id, self.registry),
                          brief=brief, nudge=self.prompts.nudge, max_nudges=cfg.max_nudges,
                          context_tokens=cfg.context_tokens)
        t0 = time.monotonic()
        rec = session.run()
        run.writer.record_session(rec, session.steps)
        if session.fatal is not None:  # the endpoint refuses every request: stop the run,
            session.fatal.kept = self._child(ctx, session, state, rec, plateau is not None, t0)
            raise session.fatal
        if rec.outcome == "error":
            self._event("operator_error", f"agent session {rec.id}: {rec.reason}",
                        {"session_id": rec.id, "parent_id": rec.parent_id})
        if rec.outcome == "budget" and "run budget" in rec.reason:
            self.exhausted = True
        if rec.outcome != "submitted":
            self.last_reason = f"session {rec.id} ended {rec.outcome}: {rec.reason}"[:300]
        return self._child(ctx, session, state, rec, plateau is not None, t0)

    def _child(self, ctx: VariationContext, session: Session, state: SessionState,
               rec: SessionRecord, plateau: bool, t0: float) -> Candidate | None:
        """The submitted candidate; else the session's best verified state (unsubmitted);
        else None."""
        unsubmitted = None
        if rec.outcome != "submitted":
            kept = state.best_verified() if rec.outcome != "gave_up" else None
            if kept is None:
                return None
            unsubmitted = f"{rec.outcome}: {rec.reason}"[:300]
            state.source, state.hypothesis = kept[0], self._hypothesis(session, rec.outcome)
            self._event("warning", f"agent session {rec.id} ended {rec.outcome} without "
                        "submit; its best state that evaluated ok is kept as the candidate",
                        {"session_id": rec.id, "reason": rec.reason})
        return Candidate.proposed(
            ctx.parent.id, state.source, state.hypothesis,
            self._changes(state, plateau, unsubmitted), self.name,
            parent2_id=ctx.second.id if ctx.second is not None else None,
            session_id=rec.id, tokens_in=rec.tokens_in,
            tokens_out=rec.tokens_out, cost_usd=rec.cost_usd,
            variation_seconds=round(time.monotonic() - t0, 3))

    @staticmethod
    def _hypothesis(session: Session, outcome: str) -> str:
        """An unsubmitted candidate's hypothesis: the model's last words, said as such."""
        said = next((s.result_summary for s in reversed(session.steps)
                     if s.role == "assistant" and s.result_summary.strip()), "")
        text = f"(unsubmitted: the session ended {outcome} before submit)"
        return f"{text} the model's last note: {said.strip()[:1500]}" if said else text

    @staticmethod
    def _changes(state: SessionState, plateau: bool,
                 unsubmitted: str | None = None) -> dict[str, Any]:
        verified = any(src == state.source for src, _ in state.passed)
        out = {"agent": {
            "edits": state.edits,
            "evaluations": [e.status if e.ok or not e.failure else f"{e.status}:{e.failure.cls}"
                            for e in state.evals],
            "verified": verified,
            "knowledge": list(state.knowledge_read),
            "plateau_note": plateau,
        }}
        if unsubmitted is not None:
            out["agent"]["unsubmitted"] = unsubmitted
        return out
