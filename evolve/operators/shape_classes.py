"""Per-shape-class CONFIGs: which class of a kernel's CONFIG a shape uses, and how each
class measured.

A classed CONFIG maps a class key to that class's settings::

    CONFIG = {"D64_NC": {"BLOCK_M": 64, ...}, "D128_C": {"BLOCK_M": 128, ...}}

A key is tokens joined by "_": ``D<d>`` head dim <= d, ``C`` / ``NC`` causal or not,
``S<s>`` sequence length <= s; a missing token matches anything. A shape takes the
matching class with the tightest bounds (smallest d, then smallest s, then the one that
names causality). The seeds carry their own copy of this rule (``_settings``), since a
candidate file imports nothing of evolve; tests/test_shape_classes.py keeps them equal.
A flat CONFIG (knob -> value) is one class, ``ALL``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from evaluator import EvalResult, geomean

ALL = "ALL"  # the one class of a flat CONFIG
_TOKEN = re.compile(r"^(?:(?P<dim>[DS])(?P<n>\d+)|(?P<causal>C|NC))$")


class ShapeClassError(ValueError):
    """A class key that does not follow the grammar, or a shape no class matches."""


def is_classed(config: dict[str, Any]) -> bool:
    return bool(config) and all(isinstance(v, dict) for v in config.values())


def class_bounds(key: str) -> tuple[float, float, bool | None]:
    """(head dim bound, sequence bound, causal or None) of a class key."""
    d = s = math.inf
    causal: bool | None = None
    for tok in key.split("_"):
        m = _TOKEN.match(tok)
        if m is None:
            raise ShapeClassError(f"bad shape-class token {tok!r} in {key!r} "
                                  f"(use D<n>, S<n>, C or NC)")
        if m["causal"]:
            causal = m["causal"] == "C"
        elif m["dim"] == "D":
            d = int(m["n"])
        else:
            s = int(m["n"])
    return d, s, causal


def class_of(config: dict[str, Any], D: int, causal: bool, S: int) -> str:
    """The class key a shape uses (``ALL`` for a flat CONFIG)."""
    if not is_classed(config):
        return ALL
    best, rank = None, None
    for key in config:
        d, s, c = class_bounds(key)
        if D <= d and S <= s and c in (None, causal):
            r = (d, s, c is None)
            if rank is None or r < rank:
                best, rank = key, r
    if best is None:
        raise ShapeClassError(f"no CONFIG class for D={D} causal={causal} S={S}")
    return best


def settings(config: dict[str, Any], D: int, causal: bool, S: int) -> dict[str, Any]:
    """The knob values a shape runs with."""
    return dict(config) if not is_classed(config) else dict(config[class_of(config, D, causal, S)])


def classes(config: dict[str, Any]) -> list[str]:
    return list(config) if is_classed(config) else [ALL]


def class_settings(config: dict[str, Any], cls: str) -> dict[str, Any]:
    return dict(config) if cls == ALL else dict(config[cls])


def class_space(space: dict[str, Any], cls: str) -> dict[str, list]:
    """The allowed values of each knob of one class: SEARCH_SPACE may be per class
    ({class: {knob: [...]}}) or shared ({knob: [...]})."""
    if cls in space and isinstance(space[cls], dict):
        raw = space[cls]
    else:
        raw = {k: v for k, v in space.items() if not isinstance(v, dict)}
    return {k: list(v) for k, v in raw.items() if isinstance(v, (list, tuple)) and v}


def class_ratios(config: dict[str, Any], result: EvalResult | None) -> dict[str, float]:
    """Geomean speedup (ratio to the primary baseline) of each class over the shapes of a
    recorded evaluation; classes without a measured shape are absent."""
    if result is None or not config:
        return {}
    per: dict[str, list[float]] = {}
    for sh in result.shapes:
        if sh.speedup is None or not sh.speedup > 0:
            continue
        try:
            key = class_of(config, sh.D, sh.causal, sh.S)
        except ShapeClassError:
            continue
        per.setdefault(key, []).append(float(sh.speedup))
    return {k: g for k, v in per.items() if (g := geomean(v)) is not None}


@dataclass(frozen=True)
class Measured:
    """One measured candidate of a run, as the class table reads it."""
    id: int
    config: dict[str, Any]
    result: EvalResult
    seed_code: bool = True  # the seed's code outside CONFIG (only settings differ)


@dataclass(frozen=True)
class ClassRow:
    """How one class of the seed's CONFIG measured in a run. Every ratio is a geomean over
    the shapes the SEED puts in that class, whatever classes a candidate split them into
    (a candidate's own class "D128_C" may cover fewer shapes after a split)."""
    cls: str
    seed: float | None  # the seed's ratio to the baseline there
    best: float  # the best any candidate measured there
    best_id: int
    change: str  # what the best candidate ran there, against the seed's settings
    spread: tuple[int, float, float] | None  # (n, low, high) over the candidates that ran
    # the seed's code and settings there: how far the measurement alone moves a class
    shapes: int = 0  # how many of the seed's shapes the class holds
    seed_mean: float | None = None  # mean ratio of the candidates counted in `spread`
    steady: tuple[str, int, float] | None = None  # (change, n, mean): the settings with the
    # best mean ratio among those run STEADY_N+ times with the seed's code (the seed's own
    # included): a gain that is not the luck of one measurement


STEADY_N = 3  # runs of one setting before its mean counts as measured


def seed_class_rows(entries: list[Measured], seed_id: int = 0) -> list[ClassRow]:
    """One row per class of the seed's CONFIG from the run's measured candidates; a
    candidate counts for a class only where every shape the seed put there was measured.
    The lowest id wins a tie."""
    seed = next((e for e in entries if e.id == seed_id), None)
    if seed is None or not seed.config:
        return []
    members: dict[str, list[str]] = {}  # seed class -> shape names
    where: dict[str, tuple[int, bool, int]] = {}  # shape name -> (D, causal, S)
    for sh in seed.result.shapes:
        try:
            members.setdefault(class_of(seed.config, sh.D, sh.causal, sh.S), []).append(sh.name)
        except ShapeClassError:
            continue
        where[sh.name] = (sh.D, sh.causal, sh.S)
    rows = []
    for cls, names in sorted(members.items()):
        want = class_settings(seed.config, cls)
        seed_r, best, same = None, None, []
        runs: dict[str, list[float]] = {}  # seed's code, unsplit: settings change -> ratios
        for e in sorted(entries, key=lambda e: e.id):
            speed = {sh.name: sh.speedup for sh in e.result.shapes}
            if not e.config or any(not speed.get(n) for n in names):
                continue
            r = geomean([float(speed[n]) for n in names])
            used = {}
            try:
                for n in names:
                    used[class_of(e.config, *where[n])] = settings(e.config, *where[n])
            except ShapeClassError:
                continue
            if e.id == seed_id:
                seed_r = r
            if e.seed_code and all(v == want for v in used.values()):
                same.append(r)
            if e.seed_code and len(used) == 1:
                runs.setdefault(_change(want, used), []).append(r)
            if r is not None and (best is None or r > best[1]):
                best = (e.id, r, _change(want, used) + ("" if e.seed_code else " + code"))
        if best is None:
            continue
        steady = max(((c, len(rs), sum(rs) / len(rs)) for c, rs in runs.items()
                      if len(rs) >= STEADY_N), key=lambda t: t[2], default=None)
        rows.append(ClassRow(cls, seed_r, best[1], best[0], best[2],
                             (len(same), min(same), max(same)) if same else None,
                             len(names), sum(same) / len(same) if same else None, steady))
    return rows


def steady_gains(rows: list[ClassRow]) -> tuple[dict[str, float], float]:
    """Per class, the log gain of its best steady settings over the mean of the seed's own
    settings there, weighted by the class's share of the seed's shapes (what it adds to the
    log of the suite's geomean); and their sum: the most a class-wise crossover of this
    run's repeatable settings could add to the score. A class without both means adds 0."""
    total = sum(r.shapes for r in rows)
    adds = {r.cls: (math.log(r.steady[2] / r.seed_mean) * r.shapes / total
                    if r.steady and r.seed_mean and r.steady[2] > r.seed_mean else 0.0)
            for r in rows}
    return adds, sum(adds.values())


def _change(want: dict[str, Any], used: dict[str, dict[str, Any]]) -> str:
    """The settings a candidate ran on a seed class's shapes, against the seed's."""
    def diff(got: dict[str, Any]) -> str:
        return ", ".join(f"{k} {want.get(k, '-')}->{v}" for k, v in got.items()
                         if want.get(k) != v) or "the seed's"
    if len(used) == 1:
        d = diff(next(iter(used.values())))
        return f"({d})" if d == "the seed's" else d
    return "split: " + "; ".join(f"{c}: {diff(v)}" for c, v in sorted(used.items()))


def render_class_table(entries: list[Measured], seed_id: int = 0) -> str:
    """Per class of the seed: its ratio, the best in the run and which candidate, the
    range measured by candidates that kept the seed's code and settings there (a best
    inside that range is noise, not a find), and what the best one changed, "+ code"
    where its source differs outside CONFIG too (plain text)."""
    lines = [f"{'class':<12} {'seed':>6} {'best':>6} {'from':>5} {'seed settings':>17}  "
             f"changed vs the seed"]
    for row in seed_class_rows(entries, seed_id):
        spread = "-" if row.spread is None else \
            f"{row.spread[0]}x {row.spread[1]:.3f}-{row.spread[2]:.3f}"
        seed = "-" if row.seed is None else f"{row.seed:.3f}"
        lines.append(f"{row.cls:<12} {seed:>6} {row.best:>6.3f} {'#' + str(row.best_id):>5} "
                     f"{spread:>17}  {row.change}")
    return "\n".join(lines)


def render_steady_table(entries: list[Measured], seed_id: int = 0) -> str:
    """Per class of the seed: the mean of the seed's settings there, the settings with the
    best mean among those run STEADY_N+ times with the seed's code, the gain on the class
    and what that gain adds to the suite's geomean (the class's share of the shapes); last,
    all classes together: what a crossover of the run's steady settings could reach."""
    rows = seed_class_rows(entries, seed_id)
    adds, total = steady_gains(rows)
    n_all = sum(r.shapes for r in rows)
    lines = [f"{'class':<12} {'shapes':>6} {'seed':>10}  {'steady best':<20} "
             f"{'runs':>4} {'mean':>6} {'class':>7} {'suite':>7}"]
    for row in rows:
        seed = "-" if row.seed_mean is None else f"{row.spread[0]}x {row.seed_mean:.3f}"
        if row.steady is None:
            lines.append(f"{row.cls:<12} {f'{row.shapes}/{n_all}':>6} {seed:>10}  "
                         f"(no setting run {STEADY_N}+ times)")
            continue
        change, n, mean = row.steady
        gain = "-" if row.seed_mean is None else f"{100 * (mean / row.seed_mean - 1):+.1f} %"
        lines.append(f"{row.cls:<12} {f'{row.shapes}/{n_all}':>6} {seed:>10}  {change:<20} "
                     f"{n:>4} {mean:>6.3f} {gain:>7} {100 * math.expm1(adds[row.cls]):>+5.1f} %")
    lines.append(f"every class at its best steady settings: {100 * math.expm1(total):+.1f} % on "
                 f"the suite's geomean")
    return "\n".join(lines)
