"""Parent selection: the run's front, tournaments, random exploration and crossover.

Each pick is one of three draws (`SelectionPolicy`):
- elite (`elite_prob`): one of the `elite_k` best-scored candidates, the best most often
  (weights elite_k, elite_k - 1, ..., 1), so the lineage's front keeps stacking changes;
- explore (`explore_prob`): a uniformly random correct candidate;
- otherwise a tournament: the best of `tournament_k` random correct candidates.

Why the front gets its share (H100, `seeds/gqa_naive.py`, 20 minutes, offline operator,
benchmarks/results/2026-12-07-h100-session11/): with tournaments of 3 and 20 % random
picks alone, 12 of 118 children came from the best candidate of the moment and 63 from
parents ranked below the top 10; the changes that paid were spread over separate
lineages (TMA descriptors in one, the deeper pipelines in another), none of which
held them all, and the run ended at 0.747 while the same seed with its recipes stacked
and a taller D=128 tile measured 0.800 in the same session.
With this policy the same run (session 12, benchmarks/results/2026-12-07-h100-session12/)
reached 0.831, rematch-verified, its winner nine changes down one line; 16 of 69
children came from the champion of the moment (counted when each child was recorded).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from evolve.records import Candidate


@dataclass(frozen=True)
class SelectionPolicy:
    tournament_k: int = 3
    explore_prob: float = 0.1  # pick a uniformly random ok candidate instead
    crossover_prob: float = 0.2  # also pick a second, different parent
    elite_prob: float = 0.5  # pick one of the elite_k best (rank-weighted) instead
    elite_k: int = 3

    def __post_init__(self) -> None:
        if self.tournament_k < 1 or self.elite_k < 1:
            raise ValueError("tournament_k and elite_k must be at least 1")
        for name in ("explore_prob", "crossover_prob", "elite_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.elite_prob + self.explore_prob > 1.0:
            raise ValueError("elite_prob + explore_prob must not exceed 1")


def _rank_key(c: Candidate) -> tuple[float, int]:
    """Best score first; among equal scores the older candidate."""
    return (c.score or 0.0, -c.id)


def pick_one(pool: list[Candidate], rng: random.Random, policy: SelectionPolicy,
             exclude: int | None = None) -> Candidate | None:
    choices = [c for c in pool if c.id != exclude]
    if not choices:
        return None
    draw = rng.random()
    if draw < policy.elite_prob:
        front = sorted(choices, key=_rank_key, reverse=True)[:policy.elite_k]
        weights = list(range(len(front), 0, -1))
        return rng.choices(front, weights=weights, k=1)[0]
    if draw < policy.elite_prob + policy.explore_prob:
        return rng.choice(choices)
    entrants = rng.sample(choices, k=min(policy.tournament_k, len(choices)))
    return max(entrants, key=_rank_key)


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
