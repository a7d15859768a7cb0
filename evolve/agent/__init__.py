"""The agentic variation operator (AVO): one variation = one tool-calling agent session.

Modules: client (openai client, retries, usage), tools (registry, schemas, validation,
truncation), handlers (the tools and the session state they change), context (the
conversation under its token budget: superseded outputs stubbed), session (one session
loop), budget, pricing, prompts (the files, the system prompt and the brief),
supervisor (plateau detection), operator (AgentOperator.propose).
"""

from evolve.agent.operator import AgentOperator

__all__ = ["AgentOperator"]
