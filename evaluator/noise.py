"""Noise of the score: A/A spread and the challenger-vs-champion decision.

``spread(xs)`` is the relative range ``(max - min) / median`` of repeated scores.
``decide`` declares a challenger better only when the ratio of the two scores measured
in ONE worker, interleaved round by round on identical inputs, exceeds
``1 + max(noise, MIN_MARGIN)``, where ``noise`` is the larger of the two sides'
round-score spreads. A win inside the noise band is no win.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

MIN_MARGIN = 0.01


def geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def spread(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if len(xs) < 2:
        return 0.0
    med = statistics.median(xs)
    return (max(xs) - min(xs)) / med if med > 0 else 0.0


@dataclass
class CompareResult:
    challenger_score: float | None
    champion_score: float | None
    ratio: float | None
    noise: float
    better: bool
    per_round: list[dict[str, float | None]] = field(default_factory=list)
    failure: dict[str, Any] | None = None  # {"side", "class", "message"} when a side failed
    device: str = "interpreter"
    timing: str = ""
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CompareResult":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def decide(challenger_rounds: list[float | None], champion_rounds: list[float | None],
           challenger_score: float | None, champion_score: float | None) -> tuple[float | None, float, bool]:
    """Return ``(ratio, noise, better)`` from per-round scores and overall scores."""
    noise = max(spread([x for x in challenger_rounds if x]), spread([x for x in champion_rounds if x]))
    if not challenger_score or not champion_score:
        return None, noise, False
    ratio = challenger_score / champion_score
    return ratio, noise, ratio > 1.0 + max(noise, MIN_MARGIN)
