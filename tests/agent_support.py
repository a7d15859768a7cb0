"""Shared helpers for the agent tests: a run directory with a seed, a context, a server."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

from evolve.config import AgentConfig, RunConfig
from evolve.gitrepo import commit_message
from evolve.operators.base import VariationContext
from evolve.paths import default_seed
from evolve.records import Candidate, sha256_text
from evolve.run import RunHandle

SECRET = "sk-test-SECRET-123"


def seed_source() -> str:
    return default_seed("gqa").read_text(encoding="utf-8")


def make_run(tmp: Path, base_url: str, **agent_kw: Any) -> RunHandle:
    """A run directory whose candidate 0 is the gqa seed (recorded ok, not evaluated)."""
    agent = AgentConfig(model=agent_kw.pop("model", "test-model"), base_url=base_url,
                        **agent_kw)
    cfg = RunConfig(name="agent-test", target="gqa", operator="agent",
                    seed_file=str(default_seed("gqa")), suite="smoke", rng_seed=0,
                    agent=agent)
    run = RunHandle.create(tmp, cfg, {"test": True})
    src = seed_source()
    sha = run.repo.commit_candidate(0, src, [], commit_message(0, "seed", {"Operator": "seed"}))
    run.store.add_candidate(Candidate(
        id=0, parent_id=None, parent2_id=None, operator="seed", commit_sha=sha,
        source_sha256=sha256_text(src), status="ok", score=None,
        failure_class=None, failure_message=None, hypothesis="seed kernel"))
    return run


def real_evaluate(run: RunHandle) -> Callable[[str, str], Any]:
    """ctx.evaluate as the loop builds it: the real evaluator in a scratch directory."""
    from evolve.evaluation import Evaluations
    return Evaluations(run).probe


def no_evaluate(source: str, suite: str) -> Any:
    raise AssertionError("this test must not evaluate")


def make_ctx(run: RunHandle, evaluate: Callable[[str, str], Any] = no_evaluate,
             brief: dict | None = None) -> VariationContext:
    parent = run.store.get_candidate(0)
    assert parent is not None
    return VariationContext(parent=parent, parent_source=run.repo.source_at(0), second=None,
                            second_source=None, run=run, rng=random.Random(0),
                            evaluate=evaluate, brief=brief or {})


def config_edit(source: str) -> tuple[str, str]:
    """An exact, unique (old, new) pair that changes one CONFIG value of the seed."""
    old = '"D64_NC": {"BLOCK_M": 64, "BLOCK_N": 64,'
    assert source.count(old) == 1
    return old, '"D64_NC": {"BLOCK_M": 64, "BLOCK_N": 32,'
