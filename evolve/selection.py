"""Parent selection: tournament over ok candidates with random exploration and crossover."""

from __future__ import annotations

import random
from dataclasses import dataclass

from evolve.records import Candidate


@dataclass(frozen=True)
class SelectionPolicy:
    tournament_k: int = 3
    explore_prob: float = 0.2  # pick a uniformly random ok candidate instead
    crossover_prob: float = 0.2  # also pick a second, different parent


def pick_one(pool: list[Candidate], rng: random.Random, policy: SelectionPolicy,
             exclude: int | None = None) -> Candidate | None:
    choices = [c for c in pool if c.id != exclude]
    if not choices:
        return None
    if rng.random() < policy.explore_prob:
        return rng.choice(choices)
    entrants = rng.sample(choices, k=min(policy.tournament_k, len(choices)))
    return max(entrants, key=lambda c: (c.score or 0.0, -c.id))


def select_parents(ok: list[Candidate], rng: random.Random,
                   policy: SelectionPolicy) -> tuple[Candidate, Candidate | None]:
    """(primary, second or None). Raises ValueError when there is no ok candidate."""
    pool = [c for c in ok if c.ok and c.score is not None]
    if not pool:
        raise ValueError("no correct candidate to select a parent from")
    primary = pick_one(pool, rng, policy)
    assert primary is not None
    second = None
    if len(pool) > 1 and rng.random() < policy.crossover_prob:
        second = pick_one(pool, rng, policy, exclude=primary.id)
    return primary, second
