"""The offline variation operator: CONFIG mutation per shape class, crossovers, source
recipes, chosen by a bandit over what has paid off in this run.

No LLM: it is the classical baseline the agentic operator is compared with. Each call
lists the moves open to the parent, one per kind ("knob:<name>:up" / ":down", "knobs:pair",
"knobs:tile", "split:class", "crossover:class", "crossover:mix", "recipe:<name>"), and lets a
Thompson-sampling bandit over the run's recorded trials (operators/payoff.py: gains, slow
pre-screen rejections and failures) pick the kind (a knob kind judged only by its tries on
the parent's code: `_on_this_code`); a kind that failed every time, three tries or more,
is no longer proposed (payoff.dead_kinds). A knob move changes one knob of one
shape class (operators/shape_classes.py), drawn more often where the parent's ratio to
the baseline is worst; "knobs:tile" doubles or halves a class's query tile together with
its warp count; "split:class" gives the shorter sequences of a class their own
settings; "crossover:class" builds a child from the best-measured settings of each class
across the run's candidates of the same structure. A configuration already measured in
the run (same code, same CONFIG values) or already proposed by this operator is never
proposed again, nor a recipe the parent's ancestry already applied (it would undo it).
Every child carries a short hypothesis, its `variation_kind`, and `changes` = {"kind",
"knobs" ("<class>.<knob>" or "<knob>" -> from/to), "recipes", "crossover_with", and
"classes" (class crossover) or "split"}.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import random
import time
from typing import Any, Callable

from evolve.operators.base import VariationContext
from evolve.operators.config_edit import (
    ConfigEditError,
    add_class,
    read_config,
    read_search_space,
    rewrite_config,
    splice,
)
from evolve.operators.payoff import DEAD_AFTER, Bandit, Trial, dead_kinds, trials
from evolve.operators.recipes import RECIPES
from evolve.operators.shape_classes import (
    ALL,
    ShapeClassError,
    class_bounds,
    class_of,
    class_ratios,
    class_settings,
    class_space,
    classes,
)
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
WORST_POWER = 4.0  # a class is drawn with weight ratio ** -WORST_POWER (worst ratio: most)
SPLIT_BUCKETS = (1024, 4096)  # sequence-length bounds a class may be split at
KNOB_KINDS = ("knob:", "knobs:", "split:")  # kinds whose payoff depends on the code around CONFIG


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


def _toward(allowed: list, current: Any, way: str = "") -> list:
    """The allowed values a knob may move to: any other one (way ""), or only the larger
    ("up") or smaller ("down") ones, where the values are numbers."""
    others = [v for v in allowed if v != current]
    if not way:
        return others
    if not _number(current):
        return []
    return [v for v in others if _number(v) and (v > current if way == "up" else v < current)]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float))


def _ways(config: dict[str, Any], space: dict[str, Any], knob: str) -> list[str]:
    """The kinds one knob's moves come in: "up" and "down" for a numeric knob (raising a
    tile and lowering it are different bets, and a loss one way must not bury the other:
    one BLOCK_M 64 -> 32 loss at D64 once kept a run from ever trying 64 -> 128 at D128),
    else one kind ("")."""
    ways = []
    for c in classes(config):
        cur, allowed = class_settings(config, c), class_space(space, c)
        if knob not in cur or knob not in allowed:
            continue
        if not _number(cur[knob]) or not all(_number(v) for v in allowed[knob]):
            return [""]
        ways += [w for w in ("up", "down") if _toward(allowed[knob], cur[knob], w)]
    return sorted(set(ways), reverse=True)


def _nearest_or_random(rng: random.Random, options: list, current: Any) -> Any:
    """The option nearest the current value (7 times in 10), else any of them."""
    if rng.random() < 0.7:
        return min(options, key=lambda v: abs(v - current))
    return rng.choice(options)


def _blank(source: str, names: tuple[str, ...], text: Callable[[ast.Dict], str]) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    edits = []
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else node.target if isinstance(node, ast.AnnAssign) else None  # CONFIG: dict = {}
        if isinstance(target, ast.Name) and target.id in names \
                and isinstance(node.value, ast.Dict):
            edits.append((node.value, text(node.value)))
    return splice(source, edits)


def config_key(source: str) -> str:
    """Identity of a configuration: the code with its CONFIG values put in one canonical
    form (two sources that differ only in CONFIG layout are the same configuration)."""
    def canon(node: ast.Dict) -> str:
        try:
            return json.dumps(ast.literal_eval(node), sort_keys=True)
        except (ValueError, TypeError):  # not literal, or not JSON (a set, tuple keys)
            return ast.dump(node)
    return sha256_text(_blank(source, ("CONFIG", "SEARCH_SPACE"), canon))


def structure_key(source: str) -> str:
    """Identity of the code around CONFIG: candidates with the same one can trade settings."""
    return sha256_text(_blank(source, ("CONFIG", "SEARCH_SPACE"), lambda n: "{}"))


def _key(cls: str, knob: str) -> Any:
    return knob if cls == ALL else (cls, knob)


def _label(cls: str, knob: str) -> str:
    return knob if cls == ALL else f"{cls}.{knob}"


class OfflineOperator:
    name = "offline"

    def __init__(self, max_tries: int = 16):
        self.max_tries = max_tries
        self.last_reason = ""
        self._seen: dict[int, tuple[str, str, dict[str, Any]]] = {}  # id -> keys, CONFIG
        self._proposed: set[str] = set()  # configuration keys this operator proposed

    # --- protocol ----------------------------------------------------------------

    def propose(self, ctx: VariationContext) -> Candidate | None:
        """A child of ctx.parent whose configuration this run has not measured."""
        t0 = time.monotonic()
        history = ctx.run.store.candidates()
        measured = self._measured(ctx, history)

        def fresh(source: str) -> bool:
            key = config_key(source)
            return key not in measured and key not in self._proposed \
                and not ctx.run.store.has_source(sha256_text(source))

        moves = self.moves(ctx, history, fresh)
        tried = trials(history)
        bandit = self.bandit(ctx, history)
        self.last_reason = "the parent has no SEARCH_SPACE knobs and no applicable recipe"
        dead = dead_kinds(tried) & set(moves)
        if dead:
            moves = {k: m for k, m in moves.items() if k not in dead}
            self.last_reason = (f"the moves left failed every time ({DEAD_AFTER}+ tries): "
                                + ", ".join(sorted(dead)))
        for _ in range(self.max_tries):
            if not moves:
                break
            kind = bandit.choose(sorted(moves), ctx.rng)
            prop = moves[kind]()
            if prop is None or not fresh(prop.source):
                del moves[kind]  # a knob move already tried its fresh values
                self.last_reason = "every child tried was already measured in this run"
                continue
            self._proposed.add(config_key(prop.source))
            prop.variation_kind = kind
            prop.changes_json = json.dumps({**prop.changes, "kind": kind}, sort_keys=True,
                                           default=str)
            prop.variation_seconds = time.monotonic() - t0
            return prop
        return None

    def moves(self, ctx: VariationContext, history: list[Candidate],
              fresh: Callable[[str], bool]) -> dict[str, Callable[[], Candidate | None]]:
        """kind -> a thunk making one child of that kind (None when it cannot)."""
        rng, source, pid = ctx.rng, ctx.parent_source, ctx.parent.id
        config, space = read_config(source), read_search_space(source)
        ratios = class_ratios(config, ctx.parent.evaluation)
        out: dict[str, Callable[[], Candidate | None]] = {}
        knobs = sorted({k for c in classes(config) for k, vals in class_space(space, c).items()
                        if k in class_settings(config, c)
                        and any(v != class_settings(config, c)[k] for v in vals)})
        for knob in knobs:
            for way in _ways(config, space, knob):
                out[f"knob:{knob}" + (f":{way}" if way else "")] = (
                    lambda k=knob, w=way: self.mutate(source, pid, rng, [k], ratios, fresh, way=w))
        if len(knobs) >= 2:
            out["knobs:pair"] = lambda: self.mutate(source, pid, rng, None, ratios, fresh)
        if any(_tile_pair(class_settings(config, c), class_space(space, c))
               for c in classes(config)):
            out["knobs:tile"] = lambda: self.scale_tile(source, pid, rng, ratios, fresh)
        if ctx.second is not None and ctx.second_source:
            second_id, second_source = ctx.second.id, ctx.second_source
            out["crossover:mix"] = lambda: self.crossover(source, second_source, pid,
                                                          second_id, rng)
        if len(classes(config)) > 1:
            lineage = self._lineage(ctx, history)
            out["crossover:class"] = lambda: self.class_crossover(source, pid, lineage)
            out["split:class"] = lambda: self.split_class(source, pid, rng, ratios, fresh)
        applied = _ancestry_recipes(pid, history)
        for name, recipe in RECIPES.items():
            if recipe.retired_on(_target(ctx)) or name in applied:
                continue
            child = recipe.apply(source)
            if child is not None:
                out[f"recipe:{name}"] = (lambda n=name, c=child: Candidate.proposed(
                    pid, c, f"{n}: {RECIPES[n].rationale}", _changes({}, recipes=[n]),
                    self.name))
        return out

    # --- the run's measured configurations ------------------------------------------

    def _measured(self, ctx: VariationContext, history: list[Candidate]) -> set[str]:
        repo = getattr(ctx.run, "repo", None)
        for c in history:
            if c.id in self._seen or repo is None:
                continue
            try:
                src = repo.source_at(c.id)
            except Exception:  # noqa: BLE001 - a missing commit only weakens the dedupe
                continue
            self._seen[c.id] = (config_key(src), structure_key(src), read_config(src))
        return {v[0] for v in self._seen.values()}

    def bandit(self, ctx: VariationContext, history: list[Candidate]) -> Bandit:
        """The bandit that picks the kind of a child of ctx.parent: the run's trials as this
        parent's code sees them (`_on_this_code`), with the target's measured recipe priors."""
        self._measured(ctx, history)
        return Bandit(self._on_this_code(trials(history), ctx.parent_source),
                      priors=recipe_priors(_target(ctx)))

    def _on_this_code(self, tried: list[Trial], parent_source: str) -> list[Trial]:
        """The trials the bandit weighs for a child of this parent: a knob move's payoff
        (KNOB_KINDS) counts only where it was measured on the parent's code (its structure);
        recipes and crossovers count wherever they ran. H100, naive run (2026-12-06):
        BLOCK_M 64 -> 128 at D=128 (4 warps) spills 140-172 registers on seeds/gqa_naive.py
        and 0-64 once its recipes are stacked (sm90_compile), as in seeds/gqa.py, so a loss on the seed's code must not
        keep the move from the code where it can pay. A trial whose parent's code is not
        known counts."""
        mine = structure_key(parent_source)
        def here(t: Trial) -> bool:
            seen = self._seen.get(t.parent) if t.parent is not None else None
            return not t.kind.startswith(KNOB_KINDS) or seen is None or seen[1] == mine
        return [t for t in tried if here(t)]

    def _lineage(self, ctx: VariationContext,
                 history: list[Candidate]) -> list[tuple[int, dict[str, Any], dict[str, float]]]:
        """(id, CONFIG, class ratios) of the ok candidates with the parent's structure and
        suite, the parent included."""
        mine = structure_key(ctx.parent_source)
        suite = ctx.parent.suite
        out = [(ctx.parent.id, read_config(ctx.parent_source),
                class_ratios(read_config(ctx.parent_source), ctx.parent.evaluation))]
        for c in history:
            seen = self._seen.get(c.id)
            if c.id == ctx.parent.id or not c.ok or seen is None or seen[1] != mine \
                    or (suite and c.suite != suite):
                continue
            out.append((c.id, seen[2], class_ratios(seen[2], c.evaluation)))
        return out

    # --- moves -------------------------------------------------------------------

    def mutate(self, source: str, parent_id: int, rng: random.Random,
               knobs: list[str] | None = None, ratios: dict[str, float] | None = None,
               fresh: Callable[[str], bool] | None = None, tries: int = 8,
               way: str = "") -> Candidate | None:
        """One knob (or, with knobs=None, two) of one shape class to another allowed value;
        the class is drawn with weight ratio ** -WORST_POWER (worst class most often).
        way "up" / "down": only to a larger / smaller value (the knob's kind says which)."""
        config, space = read_config(source), read_search_space(source)
        ratios = ratios or {}
        for _ in range(tries):
            open_ = {}  # class -> knobs that can move there
            for c in classes(config):
                cur, allowed = class_settings(config, c), class_space(space, c)
                movable = [k for k in allowed if k in cur and _toward(allowed[k], cur[k], way)
                           and (knobs is None or k in knobs)]
                if len(movable) >= (2 if knobs is None else 1):
                    open_[c] = movable
            if not open_:
                return None
            cls = pick_class(list(open_), ratios, rng)
            cur, allowed = class_settings(config, cls), class_space(space, cls)
            chosen = rng.sample(open_[cls], k=2) if knobs is None else [open_[cls][0]]
            updates = {k: _neighbour_or_random(rng, allowed[k], cur[k]) if not way
                       else _nearest_or_random(rng, _toward(allowed[k], cur[k], way), cur[k])
                       for k in chosen}
            try:
                child = rewrite_config(source, {_key(cls, k): v for k, v in updates.items()})
            except ConfigEditError:
                return None
            if fresh is not None and not fresh(child):
                continue
            where = _where(cls, ratios)
            parts = [f"{k} {cur[k]} -> {v}: {knob_rationale(k, cur[k], v)}"
                     for k, v in updates.items()]
            return Candidate.proposed(
                parent_id, child, where + "; ".join(parts),
                _changes({_label(cls, k): (cur[k], v) for k, v in updates.items()}),
                self.name)
        return None

    def scale_tile(self, source: str, parent_id: int, rng: random.Random,
                   ratios: dict[str, float] | None = None,
                   fresh: Callable[[str], bool] | None = None, tries: int = 8
                   ) -> Candidate | None:
        """The query tile of one class doubled or halved together with its warp count, so
        that every warp keeps the rows it owns: one knob alone crowds a warp's registers
        (a taller tile) or leaves warps without rows (more warps), so a single-knob walk
        rarely reaches the other tile size. The class is drawn as in `mutate`."""
        config, space = read_config(source), read_search_space(source)
        ratios = ratios or {}
        for _ in range(tries):
            open_ = {c: _tile_pair(class_settings(config, c), class_space(space, c))
                     for c in classes(config)}
            open_ = {c: moves for c, moves in open_.items() if moves}
            if not open_:
                return None
            cls = pick_class(list(open_), ratios, rng)
            (bm, old_m, new_m), (wk, old_w, new_w) = rng.choice(open_[cls])
            try:
                child = rewrite_config(source, {_key(cls, bm): new_m, _key(cls, wk): new_w})
            except ConfigEditError:
                return None
            if fresh is not None and not fresh(child):
                continue
            where = _where(cls, ratios)
            why = ("grows with the warps that compute it: each K/V tile serves more rows"
                   if new_m > old_m else "shrinks with its warps: more programs for short "
                   "sequences")
            hyp = (f"{where}{bm} {old_m} -> {new_m} with {wk} {old_w} -> {new_w}: the tile "
                   f"{why}, rows per warp unchanged")
            return Candidate.proposed(
                parent_id, child, hyp,
                _changes({_label(cls, bm): (old_m, new_m), _label(cls, wk): (old_w, new_w)}),
                self.name)
        return None

    def split_class(self, source: str, parent_id: int, rng: random.Random,
                    ratios: dict[str, float] | None = None,
                    fresh: Callable[[str], bool] | None = None, tries: int = 8
                    ) -> Candidate | None:
        """A class without a sequence bound gets a copy for sequences <= a bucket
        (SPLIT_BUCKETS) with one knob moved there: short and long sequences can then
        settle on different tiles. The class is drawn as in `mutate` (worst most often).
        A split that would also take shapes of another class is not offered."""
        config, space = read_config(source), read_search_space(source)
        ratios = ratios or {}
        for _ in range(tries):
            open_ = [(c, b) for c in classes(config) if c != ALL and _seq_bound(c) > max(
                SPLIT_BUCKETS) for b in SPLIT_BUCKETS if f"{c}_S{b}" not in config
                and not _split_steals(config, c, f"{c}_S{b}")]
            if not open_:
                return None
            cls = pick_class(sorted({c for c, _ in open_}), ratios, rng)
            bound = rng.choice([b for c, b in open_ if c == cls])
            cur, allowed = class_settings(config, cls), class_space(space, cls)
            movable = [k for k in allowed if k in cur and any(v != cur[k] for v in allowed[k])]
            if not movable:
                return None
            knob = rng.choice(movable)
            new = _neighbour_or_random(rng, allowed[knob], cur[knob])
            key = f"{cls}_S{bound}"
            try:
                child = add_class(source, cls, key, {**cur, knob: new})
            except ConfigEditError:
                return None
            if fresh is not None and not fresh(child):
                continue
            hyp = (f"split class {cls}: sequences <= {bound} get their own settings ({key}), "
                   f"{knob} {cur[knob]} -> {new} there: {knob_rationale(knob, cur[knob], new)}")
            ch = _changes({_label(key, knob): (cur[knob], new)})
            ch["split"] = {"from": cls, "to": key}
            return Candidate.proposed(parent_id, child, hyp, ch, self.name)
        return None

    def crossover(self, source: str, second_source: str, parent_id: int, second_id: int,
                  rng: random.Random) -> Candidate | None:
        """The primary parent's source with a mix of both parents' knob values."""
        mine, theirs = _flat(read_config(source)), _flat(read_config(second_source))
        space = read_search_space(source)
        def allowed(k: Any) -> list:
            cls, knob = k if isinstance(k, tuple) else (ALL, k)
            return class_space(space, cls).get(knob, [theirs[k]])
        differ = [k for k in mine if k in theirs and theirs[k] != mine[k]
                  and theirs[k] in allowed(k)]
        if not differ:
            return None
        take = [k for k in differ if rng.random() < 0.5] or [rng.choice(differ)]
        if len(take) == len(differ) > 1:
            take.remove(rng.choice(take))  # a real mix: keep something of the primary parent
        try:
            child = rewrite_config(source, {k: theirs[k] for k in take})
        except ConfigEditError:
            return None
        names = {k: _label(*k) if isinstance(k, tuple) else k for k in take}
        moved = ", ".join(f"{names[k]} {mine[k]} -> {theirs[k]}" for k in take)
        hyp = (f"crossover #{parent_id} x #{second_id}: take {moved} from #{second_id} "
               f"(combine knob settings that worked in two lineages)")
        return Candidate.proposed(parent_id, child, hyp,
                                  _changes({names[k]: (mine[k], theirs[k]) for k in take},
                                           crossover_with=second_id),
                                  self.name, parent2_id=second_id)

    def class_crossover(self, source: str, parent_id: int,
                        lineage: list[tuple[int, dict[str, Any], dict[str, float]]]
                        ) -> Candidate | None:
        """Every class takes the settings of the candidate that measured best on it."""
        config = read_config(source)
        updates, knobs, donors = {}, {}, {}
        for cls in classes(config):
            # same class keys: a class covers the same shapes there (a split changes that)
            measured = [(r[cls], cid, cfg) for cid, cfg, r in lineage
                        if cls in r and set(cfg) == set(config) and isinstance(cfg[cls], dict)
                        and set(cfg[cls]) == set(config[cls])]
            if not measured:
                continue
            ratio, cid, cfg = max(measured, key=lambda m: (m[0], -m[1]))
            if cid == parent_id or cfg[cls] == config[cls]:
                continue
            donors[cls] = (cid, ratio)
            for k, v in cfg[cls].items():
                if v != config[cls][k]:
                    updates[(cls, k)] = v
                    knobs[_label(cls, k)] = (config[cls][k], v)
        if not updates:
            return None
        try:
            child = rewrite_config(source, updates)
        except ConfigEditError:
            return None
        ids = [d[0] for d in donors.values()]
        main = max(set(ids), key=ids.count)
        hyp = "class-wise crossover: " + "; ".join(
            f"{cls} from #{cid} (ratio {r:.2f})" for cls, (cid, r) in donors.items()) + \
            " (each shape class takes its best-measured settings in the run)"
        ch = _changes(knobs, crossover_with=main)
        ch["classes"] = {cls: cid for cls, (cid, _) in donors.items()}
        return Candidate.proposed(parent_id, child, hyp, ch, self.name, parent2_id=main)


def _ancestry_recipes(cid: int, history: list[Candidate]) -> set[str]:
    """The recipes applied on the way from the seed to candidate `cid` (its primary parents).
    One of them that still applies there would undo itself (`swap_grid_order` is its own
    inverse): H100, 20-minute naive run, 7 tries, -2.5 % on average, while its prior (the
    gain of the first swap) kept drawing it (benchmarks/results/2026-12-07-h100-session11/)."""
    by_id = {c.id: c for c in history}
    out: set[str] = set()
    seen: set[int] = set()
    c = by_id.get(cid)
    while c is not None and c.id not in seen:
        seen.add(c.id)
        out.update(c.changes.get("recipes") or [])
        c = by_id.get(c.parent_id) if c.parent_id is not None else None
    return out


def recipe_priors(target: str) -> dict[str, float]:
    """The bandit's prior per recipe kind on `target`: the log gain each recipe measured
    against that target's seed (`Recipe.paid`), so a new run tries first what paid before."""
    return {f"recipe:{n}": math.log1p(r.paid[target]) for n, r in RECIPES.items()
            if target in r.paid}


def _target(ctx: VariationContext) -> str:
    """The run's target ("" where the context carries no run config, as in a dry run)."""
    config = getattr(getattr(ctx, "run", None), "config", None)
    return getattr(config, "target", "")


def pick_class(options: list[str], ratios: dict[str, float], rng: random.Random) -> str:
    """A class drawn with weight ratio ** -WORST_POWER. When some options were measured,
    the others are left out: no shape of the suite uses them, so a change there cannot
    move the score. With none measured, every option weighs the same."""
    measured = [c for c in options if ratios.get(c, 0) > 0]
    if not measured:
        return rng.choice(options)
    return rng.choices(measured, weights=[ratios[c] ** -WORST_POWER for c in measured])[0]


def _where(cls: str, ratios: dict[str, float]) -> str:
    """The hypothesis's prefix naming the class moved (and its measured ratio)."""
    if cls == ALL:
        return ""
    return f"class {cls}" + (f" (ratio {ratios[cls]:.2f})" if cls in ratios else "") + ": "


def _tile_pair(settings: dict[str, Any], space: dict[str, list]
               ) -> list[tuple[tuple[str, Any, Any], tuple[str, Any, Any]]]:
    """The (query-tile knob, old, new), (warps knob, old, new) moves of one class that
    double or halve both within the search space: a knob named like BLOCK_M and its warp
    count (the same name with WARPS for BLOCK_M, e.g. BLOCK_M_D64_NC / WARPS_D64_NC, else
    num_warps or WARPS)."""
    out = []
    for bm in settings:
        if "BLOCK_M" not in bm.upper() or bm not in space:
            continue
        upper = bm.upper()
        partners = [k for k in settings if k.upper() in (upper.replace("BLOCK_M", "WARPS"),
                                                          upper.replace("BLOCK_M", "NUM_WARPS"))]
        partners += [k for k in settings if k.upper() in ("NUM_WARPS", "WARPS")]
        wk = next((k for k in partners if k in space), None)
        m, w = settings[bm], settings.get(wk)
        if wk is None or not all(isinstance(x, int) and not isinstance(x, bool) for x in (m, w)):
            continue
        for f in (2, 0.5):
            nm, nw = m * f, w * f
            if nm == int(nm) and nw == int(nw) and int(nm) in space[bm] and int(nw) in space[wk]:
                out.append(((bm, m, int(nm)), (wk, w, int(nw))))
    return out


def _seq_bound(cls: str) -> float:
    """A class's sequence bound; -1 (never split) for a key outside the class grammar."""
    try:
        return class_bounds(cls)[1]
    except ShapeClassError:
        return -1


def _split_steals(config: dict[str, Any], cls: str, key: str) -> bool:
    """Whether the new class `key` (`cls` with a sequence bound) would also take shapes
    another class serves now (a tighter bound wins: `D64_NC_S1024` takes the short shapes
    of `D64_NC_S4096`, `D64_S1024` those of `D64_NC`); checked on a shape at, and just
    past, every bound of the keys."""
    keys = [k for k in config if _seq_bound(k) >= 0] + [key]
    ds, ss = {1}, {1}
    for k in keys:
        d, s, _ = class_bounds(k)
        ds |= {int(d), int(d) + 1} if d != math.inf else set()
        ss |= {int(s), int(s) + 1} if s != math.inf else set()
    now, then = {k: {} for k in keys[:-1]}, {k: {} for k in keys}
    for D, causal, S in itertools.product(sorted(ds), (False, True), sorted(ss)):
        try:
            if class_of(then, D, causal, S) == key and class_of(now, D, causal, S) != cls:
                return True
        except ShapeClassError:  # no class for this shape, before or after
            continue
    return False


def _flat(config: dict[str, Any]) -> dict[Any, Any]:
    """knob -> value, or (class, knob) -> value for a classed CONFIG."""
    if classes(config) == [ALL]:
        return dict(config)
    return {(c, k): v for c in config for k, v in config[c].items()}


def _changes(knobs: dict[str, tuple[Any, Any]], recipes: list[str] | None = None,
             crossover_with: int | None = None) -> dict[str, Any]:
    return {"knobs": {k: {"from": a, "to": b} for k, (a, b) in knobs.items()},
            "recipes": list(recipes or []), "crossover_with": crossover_with}
