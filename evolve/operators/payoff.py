"""What has paid off in this run: each variation's kind and measured gain, a Thompson
sampling bandit over the kinds, and the table the supervisor note and the agent's brief
show.

A trial is one recorded child: its kind (`Candidate.variation_kind`, else the "kind" in
its changes, else one derived from them) and its gain, log(child score / parent score).
A pre-screen `slow` rejection is evidence too: its gain is the quick-suite geomean
against the parent's speedups on the same shapes (else the ratio in its message, else
log 0.9). Any other rejection is a failure, worth FAIL_GAIN to the bandit.

    what_paid_off(store.candidates())   # the table, one string (fits 80 columns)
    Bandit(trials(cands)).choose(kinds, rng)
"""

from __future__ import annotations

import math
import random
import re
import textwrap
from dataclasses import dataclass
from typing import Iterable

from evaluator import geomean
from evolve.records import Candidate

SLOW = "slow"  # the loop's pre-screen failure class (evolve.jobs.SLOW_CLASS)
FAIL_GAIN = -0.10  # what a failed child is worth to the bandit (as a 10 % loss)
SLOW_GAIN = math.log(0.9)  # a slow rejection with nothing better to go on
MAX_GAIN = 0.7  # the bandit clips gains to +-this (one wild score must not own it)
_SLOW_MSG = re.compile(r"([0-9.]+) < [0-9.]+ x champion ([0-9.]+)")


@dataclass(frozen=True)
class Trial:
    kind: str
    outcome: str  # "better" | "worse" | "slow" | "failed"
    gain: float | None  # log score ratio to the parent; None for a failure
    parent: int | None = None  # the candidate it varied (whose code it was measured on)

    @property
    def reward(self) -> float:
        """What the bandit sees: the gain clipped to +-MAX_GAIN, FAIL_GAIN for a failure."""
        return FAIL_GAIN if self.gain is None else _clip(self.gain)


def kind_of(c: Candidate) -> str:
    """The variation kind of a recorded candidate ("" for a seed)."""
    if c.parent_id is None:
        return ""
    if c.variation_kind:
        return c.variation_kind
    ch = c.changes
    if ch.get("kind"):
        return str(ch["kind"])
    if c.operator != "offline":
        return c.operator or "unknown"
    if ch.get("recipes"):
        return "recipe:" + "+".join(ch["recipes"])
    if ch.get("crossover_with") is not None:
        return "crossover:mix"
    knobs = sorted(ch.get("knobs") or {})
    return "knob:" + knobs[0] if len(knobs) == 1 else "knobs:pair" if knobs else "unknown"


def _clip(x: float) -> float:
    return max(-MAX_GAIN, min(MAX_GAIN, x))


def slow_gain(child: Candidate, parent: Candidate | None) -> float:
    """The evidence in a `slow` rejection: how far below its parent the child measured."""
    mine = {s.name: s.speedup for s in (child.evaluation.shapes if child.evaluation else [])}
    theirs = {s.name: s.speedup for s in (parent.evaluation.shapes
                                          if parent is not None and parent.evaluation else [])}
    common = [n for n in mine if mine[n] and theirs.get(n)]
    a = geomean([float(mine[n]) for n in common])
    b = geomean([float(theirs[n]) for n in common])
    if a and b:
        return math.log(a / b)
    m = _SLOW_MSG.search(child.failure_message or "")
    if m and float(m[1]) > 0 and float(m[2]) > 0:
        return math.log(float(m[1]) / float(m[2]))
    return SLOW_GAIN


def trials(cands: Iterable[Candidate]) -> list[Trial]:
    """One Trial per recorded child, in id order."""
    cands = sorted(cands, key=lambda c: c.id)
    by_id = {c.id: c for c in cands}
    out = []
    for c in cands:
        kind = kind_of(c)
        if not kind or c.status not in ("ok", "rejected"):
            continue
        parent = by_id.get(c.parent_id) if c.parent_id is not None else None
        if c.ok and c.score and parent is not None and parent.ok and parent.score:
            g = math.log(c.score / parent.score)
            out.append(Trial(kind, "better" if g > 0 else "worse", g, c.parent_id))
        elif c.failure_class == SLOW:
            out.append(Trial(kind, SLOW, slow_gain(c, parent), c.parent_id))
        elif not c.ok:
            out.append(Trial(kind, "failed", None, c.parent_id))
    return out


DEAD_AFTER = 3  # failures, with no try that ran, after which a kind is no longer proposed


def dead_kinds(history: Iterable[Trial], after: int = DEAD_AFTER) -> set[str]:
    """Kinds whose every try failed, ``after`` times or more: a move that cannot run on
    this seed family (H100, decode_naive: ``num_ctas_2`` failed 9 of 9 tries and took a
    third of a run's candidates while its 10 % loss per failure still outranked knobs
    that lost more)."""
    seen: dict[str, list[str]] = {}
    for t in history:
        seen.setdefault(t.kind, []).append(t.outcome)
    return {k for k, outs in seen.items() if len(outs) >= after and all(o == "failed" for o in outs)}


class Bandit:
    """Thompson sampling on the mean reward of each kind: a normal posterior around the
    mean of its rewards with one pseudo-try at the kind's prior, 0 unless `priors` gives
    one (a log gain measured outside this run, e.g. a recipe against the target's seed:
    `Recipe.paid`). A kind never tried samples around its prior, so it still gets
    explored; one that paid again and again in this run stands out."""

    def __init__(self, history: Iterable[Trial], prior_sd: float = 0.03, min_sd: float = 0.01,
                 priors: dict[str, float] | None = None):
        self.prior_sd, self.min_sd = prior_sd, min_sd
        self.priors = {k: _clip(v) for k, v in (priors or {}).items()}
        self.rewards: dict[str, list[float]] = {}
        for t in history:
            self.rewards.setdefault(t.kind, []).append(t.reward)

    def posterior(self, kind: str) -> tuple[float, float]:
        rs = self.rewards.get(kind, [])
        n = len(rs)
        mean = (sum(rs) + self.priors.get(kind, 0.0)) / (n + 1)
        if n >= 2:
            mu = sum(rs) / n
            sd = max(self.min_sd, math.sqrt(sum((r - mu) ** 2 for r in rs) / (n - 1)))
        else:
            sd = self.prior_sd
        return mean, sd / math.sqrt(n + 1)

    def sample(self, kind: str, rng: random.Random) -> float:
        mean, sd = self.posterior(kind)
        return rng.gauss(mean, sd)

    def choose(self, kinds: Iterable[str], rng: random.Random) -> str:
        kinds = list(kinds)
        if not kinds:
            raise ValueError("no kinds to choose from")
        return max(kinds, key=lambda k: self.sample(k, rng))


@dataclass(frozen=True)
class PayoffRow:
    kind: str
    tries: int
    better: int  # kept: beat its parent's score
    slow: int  # rejected by the pre-screen
    failed: int  # any other rejection
    mean_gain: float | None  # mean log ratio over measured tries (better, worse, slow)


def payoff_rows(cands: Iterable[Candidate]) -> list[PayoffRow]:
    """Per kind, best mean gain first (kinds with no measured gain last)."""
    per: dict[str, list[Trial]] = {}
    for t in trials(cands):
        per.setdefault(t.kind, []).append(t)
    rows = []
    for kind, ts in per.items():
        gains = [t.gain for t in ts if t.gain is not None]
        rows.append(PayoffRow(kind, len(ts), sum(t.outcome == "better" for t in ts),
                              sum(t.outcome == SLOW for t in ts),
                              sum(t.outcome == "failed" for t in ts),
                              sum(gains) / len(gains) if gains else None))
    return sorted(rows, key=lambda r: (r.mean_gain is None, -(r.mean_gain or 0), r.kind))


def what_paid_off(cands: Iterable[Candidate], limit: int = 15, timed: bool = True) -> str:
    """The "what has paid off in this run" table (kind, tries, kept, slow, failed, mean
    gain), plain text within 80 columns; "" when no variation has been measured.
    `timed=False` (CPU interpreter scores, not performance): no gain column values."""
    rows = payoff_rows(cands)
    if not rows:
        return ""
    lines = ["what has paid off in this run (kept: beat its parent; gain: geomean score",
             "ratio to the parent over measured tries, slow pre-screen rejections included)"
             if timed else "what has paid off in this run (kept: beat its parent; no gains: "
             "interpreter scores are not performance numbers)",
             f"{'kind':<40} {'tries':>5} {'kept':>5} {'slow':>5} {'failed':>6} {'gain':>8}"]
    for r in rows[:limit]:
        gain = f"{math.expm1(r.mean_gain) * 100:+.1f} %" \
            if r.mean_gain is not None and timed else "-"
        kind = r.kind if len(r.kind) <= 40 else r.kind[:39] + "…"
        lines.append(f"{kind:<40} {r.tries:>5} {r.better:>5} {r.slow:>5} {r.failed:>6} "
                     f"{gain:>8}")
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more kinds")
    dead = sorted(dead_kinds(trials(cands)))
    if dead:
        lines += textwrap.wrap(f"no longer proposed (failed every time, {DEAD_AFTER}+ tries): "
                               + ", ".join(dead), 80, subsequent_indent="  ")
    return "\n".join(lines)
