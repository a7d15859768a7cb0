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


def best_per_class(entries: list[tuple[int, dict[str, Any], dict[str, float]]]
                   ) -> dict[str, tuple[int, float, dict[str, Any]]]:
    """class -> (candidate id, ratio, settings) of the entry (id, CONFIG, class ratios)
    that measured best on it; the lowest id wins a tie."""
    best: dict[str, tuple[int, float, dict[str, Any]]] = {}
    for cid, config, ratios in sorted(entries, key=lambda e: e[0]):
        for cls, r in ratios.items():
            if cls in best and best[cls][1] >= r:
                continue
            best[cls] = (cid, r, class_settings(config, cls) if config else {})
    return best


def render_class_table(entries: list[tuple[int, dict[str, Any], dict[str, float]]],
                       seed_id: int = 0) -> str:
    """Per class: the seed's ratio, the best ratio in the run, which candidate, and what it
    changed against the seed's settings of that class (plain text)."""
    best = best_per_class(entries)
    seed = next((e for e in entries if e[0] == seed_id), None)
    lines = [f"{'class':<16} {'seed':>6} {'best':>6} {'from':>6}  changed vs the seed"]
    for cls in sorted(best):
        cid, r, knobs = best[cls]
        base = seed[2].get(cls) if seed else None
        was = class_settings(seed[1], cls) if seed and (cls == ALL or cls in seed[1]) else {}
        diff = ", ".join(f"{k} {was.get(k, '-')}->{v}" for k, v in knobs.items()
                         if was.get(k) != v) or ("(the seed's)" if was else "(new class)")
        lines.append(f"{cls:<16} {'-' if base is None else f'{base:.3f}':>6} {r:>6.3f} "
                     f"{'#' + str(cid):>6}  {diff}")
    return "\n".join(lines)
