"""Parent selection: the front's share of the picks, exploration, crossover partners, and
bad policies refused (in the policy and in run.toml)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from evaluator import EvalResult
from evolve.config import ConfigError, RunConfig
from evolve.records import Candidate
from evolve.selection import SelectionPolicy, select_parents


def _pool(n: int) -> list[Candidate]:
    """n correct candidates, #i scored 0.5 + i / 1000 (the last one is the best)."""
    out = []
    for i in range(n):
        c = Candidate(parent_id=None if i == 0 else 0, operator="offline", source=f"# {i}")
        res = EvalResult(status="ok", target="gqa", suite="default", score=0.5 + i / 1000)
        out.append(c.committed(i, 0 if i == 0 else 1).with_result(res))
    return out


def _picks(policy: SelectionPolicy, pool: list[Candidate], n: int = 4000) -> Counter:
    rng = random.Random(3)
    return Counter(select_parents(pool, rng, policy)[0].id for _ in range(n))


def test_the_front_gets_its_share_of_a_large_pool():
    pool = _pool(100)
    picks = _picks(SelectionPolicy(), pool)
    # elite draws (half the picks) take the best of three 3:2:1; tournaments of 3 out of
    # 100 and random picks rarely reach it
    assert 0.22 < picks[99] / 4000 < 0.32
    top3 = sum(picks[i] for i in (97, 98, 99))
    assert 0.47 < top3 / 4000 < 0.60
    assert picks[99] > picks[98] > picks[97]
    # the rest of the run still gets picked: exploration and tournaments
    assert len(picks) > 60
    # the old policy (no elite draws, 20 % random) gave the best about 3 % of the picks
    old = _picks(SelectionPolicy(explore_prob=0.2, elite_prob=0.0), pool)
    assert old[99] / 4000 < 0.06


def test_elite_only_policy_stays_on_the_front_and_crossover_takes_another():
    pool = _pool(10)
    only = SelectionPolicy(elite_prob=1.0, explore_prob=0.0, crossover_prob=1.0, elite_k=2)
    rng = random.Random(0)
    for _ in range(200):
        a, b = select_parents(pool, rng, only)
        # the partner is drawn from the front of the rest
        assert a.id in (8, 9) and b is not None and b.id in (7, 8, 9) and b.id != a.id


def test_failed_and_unscored_candidates_are_never_parents():
    pool = _pool(3)
    bad = Candidate(parent_id=0, operator="offline", source="# bad").committed(3, 1)
    picks = _picks(SelectionPolicy(elite_prob=1.0, explore_prob=0.0), pool + [bad], 300)
    assert 3 not in picks
    with pytest.raises(ValueError, match="no correct candidate"):
        select_parents([bad], random.Random(0), SelectionPolicy())


@pytest.mark.parametrize("kw,msg", [
    ({"elite_prob": 0.8, "explore_prob": 0.3}, "must not exceed 1"),
    ({"elite_prob": -0.1}, "within"),
    ({"elite_k": 0}, "at least 1"),
])
def test_bad_policies_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SelectionPolicy(**kw)
    base = dict(name="r", target="gqa", operator="offline", seed_file="s.py", suite="smoke",
                rng_seed=0)
    with pytest.raises(ConfigError, match=msg):
        RunConfig.from_dict({**base, **kw})
    assert RunConfig.from_dict(base).selection_policy() == SelectionPolicy()
