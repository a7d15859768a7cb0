"""The offline variation operator: CONFIG mutation, config crossover, source recipes.

No LLM: it is the classical baseline the agentic operator is compared with. Each child
changes one or two CONFIG knobs (values from SEARCH_SPACE), or mixes two parents'
knob values, or applies one source recipe whose pattern matches the parent. Every
child carries a short hypothesis and `changes` = {"knobs", "recipes", "crossover_with"}.
"""

from __future__ import annotations

import random
import time
from typing import Any

from evolve.operators.base import VariationContext
from evolve.operators.config_edit import (
    ConfigEditError,
    read_config,
    read_search_space,
    rewrite_config,
)
from evolve.operators.recipes import RECIPES
from evolve.records import Candidate, sha256_text

_WHY = {  # knob family -> (why raising it may help, why lowering it may help)
    "block_n": ("bigger key tiles amortise the online-softmax bookkeeping over more keys",
                "smaller key tiles cut register and shared-memory pressure"),
    "block_m": ("taller query tiles reuse every loaded K/V tile for more rows",
                "shorter query tiles launch more programs (occupancy on short sequences)"),
    "warps": ("more warps split the tile math and hide memory latency",
              "fewer warps leave more registers per thread (less spilling)"),
    "stages": ("a deeper pipeline overlaps K/V loads with the matmuls",
               "fewer stages free shared memory for larger tiles / more resident blocks"),
}


def knob_rationale(name: str, old: Any, new: Any) -> str:
    if isinstance(new, bool) or isinstance(old, bool) or {old, new} == {0, 1}:
        return f"{'enable' if new else 'disable'} {name} to test whether the feature pays off here"
    low = name.lower()
    for family, (up, down) in _WHY.items():
        if family in low:
            try:
                return up if new > old else down
            except TypeError:
                break
    return f"probe {name} at another allowed value"


def _neighbour_or_random(rng: random.Random, allowed: list, current: Any) -> Any:
    others = [v for v in allowed if v != current]
    if current in allowed and rng.random() < 0.7:
        i = allowed.index(current)
        near = [allowed[j] for j in (i - 1, i + 1) if 0 <= j < len(allowed)]
        if near:
            return rng.choice(near)
    return rng.choice(others)


class OfflineOperator:
    name = "offline"

    def __init__(self, recipe_prob: float = 0.3, max_tries: int = 12):
        self.recipe_prob = recipe_prob
        self.max_tries = max_tries
        self.last_reason = ""

    # --- protocol ----------------------------------------------------------------

    def propose(self, ctx: VariationContext) -> Candidate | None:
        """A child of ctx.parent (crossover when ctx.second is given) not seen in this run."""
        t0 = time.monotonic()
        for _ in range(self.max_tries):
            prop = self._one(ctx)
            if prop is None:
                break
            if not ctx.run.store.has_source(sha256_text(prop.source)):
                prop.variation_seconds = time.monotonic() - t0
                return prop
            self.last_reason = "every child tried was already evaluated in this run"
        return None

    # --- one child ---------------------------------------------------------------

    def _one(self, ctx: VariationContext) -> Candidate | None:
        rng, source, pid = ctx.rng, ctx.parent_source, ctx.parent.id
        prop = None
        if ctx.second is not None:
            prop = self.crossover(source, ctx.second_source, pid, ctx.second.id, rng)
        if prop is None and rng.random() < self.recipe_prob:
            prop = self.recipe(source, pid, rng)
        if prop is None:
            prop = self.mutate(source, pid, rng)
        if prop is None:  # no knobs to turn: a recipe is the only move left
            prop = self.recipe(source, pid, rng)
        if prop is None:
            self.last_reason = "the parent has no SEARCH_SPACE knobs and no applicable recipe"
        return prop

    def mutate(self, source: str, parent_id: int, rng: random.Random) -> Candidate | None:
        config, space = read_config(source), read_search_space(source)
        knobs = [k for k, vals in space.items()
                 if k in config and any(v != config[k] for v in vals)]
        if not knobs:
            return None
        chosen = rng.sample(knobs, k=min(len(knobs), 2 if rng.random() < 0.35 else 1))
        updates = {k: _neighbour_or_random(rng, space[k], config[k]) for k in chosen}
        try:
            child = rewrite_config(source, updates)
        except ConfigEditError:
            return None
        parts = [f"{k} {config[k]} -> {v}: {knob_rationale(k, config[k], v)}"
                 for k, v in updates.items()]
        return Candidate.proposed(parent_id, child, "; ".join(parts),
                                  _changes({k: (config[k], v) for k, v in updates.items()}),
                                  self.name)

    def crossover(self, source: str, second_source: str, parent_id: int, second_id: int,
                  rng: random.Random) -> Candidate | None:
        """The primary parent's source with a mix of both parents' knob values."""
        mine, theirs = read_config(source), read_config(second_source)
        space = read_search_space(source)
        differ = [k for k in mine if k in theirs and theirs[k] != mine[k]
                  and (k not in space or theirs[k] in space[k])]
        if not differ:
            return None
        take = [k for k in differ if rng.random() < 0.5] or [rng.choice(differ)]
        if len(take) == len(differ) > 1:
            take.remove(rng.choice(take))  # a real mix: keep something of the primary parent
        updates = {k: theirs[k] for k in take}
        try:
            child = rewrite_config(source, updates)
        except ConfigEditError:
            return None
        moved = ", ".join(f"{k} {mine[k]} -> {theirs[k]}" for k in take)
        hyp = (f"crossover #{parent_id} x #{second_id}: take {moved} from #{second_id} "
               f"(combine knob settings that worked in two lineages)")
        return Candidate.proposed(parent_id, child, hyp,
                                  _changes({k: (mine[k], theirs[k]) for k in take},
                                           crossover_with=second_id),
                                  self.name, parent2_id=second_id)

    def recipe(self, source: str, parent_id: int, rng: random.Random) -> Candidate | None:
        names = list(RECIPES)
        rng.shuffle(names)
        for name in names:
            child = RECIPES[name].apply(source)
            if child is not None:
                return Candidate.proposed(parent_id, child,
                                          f"{name}: {RECIPES[name].rationale}",
                                          _changes({}, recipes=[name]), self.name)
        return None


def _changes(knobs: dict[str, tuple[Any, Any]], recipes: list[str] | None = None,
             crossover_with: int | None = None) -> dict[str, Any]:
    return {"knobs": {k: {"from": a, "to": b} for k, (a, b) in knobs.items()},
            "recipes": list(recipes or []), "crossover_with": crossover_with}
