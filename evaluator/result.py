"""Result records of one evaluation: what `evolve eval --json` prints and the store keeps."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluator.profiling import CompileInfo, ProfileResult, compile_info_from

NOT_GPU_TIMING = "cpu-interpreter-wallclock (NOT GPU performance)"
GPU_TIMING = "cuda-events"


@dataclass
class Failure:
    cls: str
    message: str
    shape: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.cls, "message": self.message, "shape": self.shape}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Failure | None":
        if not d:
            return None
        return cls(cls=str(d["class"]), message=str(d.get("message", "")), shape=d.get("shape"))


@dataclass
class ShapeResult:
    name: str
    B: int
    Hq: int
    Hkv: int
    S: int
    D: int
    causal: bool
    dtype: str
    ms: float | None = None
    tflops: float | None = None
    baseline_ms: float | None = None
    speedup: float | None = None
    error: float | None = None
    error_ratio: float | None = None
    baselines: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShapeResult":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class EvalResult:
    status: str  # "ok" | "rejected"
    target: str
    suite: str
    failure: Failure | None = None
    score: float | None = None
    device: str = "interpreter"
    timing: str = NOT_GPU_TIMING
    primary_baseline: str | None = None
    shapes: list[ShapeResult] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    repeats: list[float] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    log_tail: str = ""
    baselines_cached: bool = False  # baseline times given by the caller (EvalOptions.baseline_ms)
    compile_info: list[CompileInfo] = field(default_factory=list)  # GPU: per specialisation
    profile: ProfileResult | None = None  # asked for with EvalOptions.profile

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def unscored(self) -> list[str]:
        """Shapes that were checked and timed but have no baseline time to compare with
        (every baseline refused them): not in the score (assemble.pick_primary)."""
        return [s.name for s in self.shapes if s.speedup is None] if self.ok and self.score else []

    @classmethod
    def rejected(cls, target: str, suite: str, failure_cls: str, message: str,
                 shape: str | None = None, **kw: Any) -> "EvalResult":
        return cls(status="rejected", target=target, suite=suite,
                   failure=Failure(failure_cls, message, shape), **kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failure"] = self.failure.to_dict() if self.failure else None  # key "class", not "cls"
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalResult":
        status = d.get("status")
        if status not in ("ok", "rejected"):
            raise ValueError(f"bad evaluation status {status!r}")
        score = d.get("score")
        if score is not None and not (isinstance(score, (int, float)) and math.isfinite(score) and score > 0):
            raise ValueError(f"bad score {score!r}")
        return cls(
            status=status,
            target=str(d.get("target", "")),
            suite=str(d.get("suite", "")),
            failure=Failure.from_dict(d.get("failure")),
            score=float(score) if score is not None else None,
            device=str(d.get("device", "interpreter")),
            timing=str(d.get("timing", NOT_GPU_TIMING)),
            primary_baseline=d.get("primary_baseline"),
            shapes=[ShapeResult.from_dict(s) for s in d.get("shapes", [])],
            validation=dict(d.get("validation", {})),
            repeats=[float(x) for x in d.get("repeats", [])],
            env=dict(d.get("env", {})),
            wall_s=float(d.get("wall_s", 0.0)),
            log_tail=str(d.get("log_tail", "")),
            baselines_cached=bool(d.get("baselines_cached", False)),
            compile_info=compile_info_from(d.get("compile_info")),
            profile=ProfileResult.from_dict(d.get("profile")),
        )
