"""What an exported module says about itself: provenance (run, lineage, scores, per-shape
numbers, environment) and the envelope of inputs the kernel was verified on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

MAX_CHAIN = 12  # ancestors listed in the docstring; longer chains keep both ends


@dataclass
class Ancestor:
    id: int
    operator: str
    score: float | None
    hypothesis: str

    def line(self) -> str:
        first = (self.hypothesis or "").strip().splitlines()[0] if (self.hypothesis or "").strip() else "-"
        if len(first) > 90:
            first = first[:87] + "..."
        score = f"{self.score:.3f}" if isinstance(self.score, (int, float)) else "n/a"
        return f"#{self.id} [{self.operator}] score {score}: {first}"


@dataclass
class ShapeNumbers:
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
    baselines: dict[str, float] = field(default_factory=dict)

    def flops(self) -> float:
        f = 4.0 * self.B * self.Hq * self.S * self.S * self.D
        return f / 2 if self.causal else f

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShapeNumbers":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


MODE_LABELS = {"cuda": "CUDA tensors",
               "interpreter": "Triton CPU interpreter (TRITON_INTERPRET=1)"}


@dataclass
class Envelope:
    """Inputs the evaluator verified the kernel on, per execution mode: ``cuda`` (compiled
    kernel on a GPU) and ``interpreter`` (TRITON_INTERPRET=1, CPU tensors)."""
    modes: dict[str, dict[str, list]]  # mode -> {"dtypes": [...], "head_dims": [...]}

    def add(self, mode: str, dtypes: list[str] | set[str], head_dims: list[int] | set[int]) -> None:
        cur = self.modes.setdefault(mode, {"dtypes": [], "head_dims": []})
        cur["dtypes"] = sorted(set(cur["dtypes"]) | set(dtypes))
        cur["head_dims"] = sorted(set(cur["head_dims"]) | {int(d) for d in head_dims})

    def text(self) -> str:
        parts = [f"{MODE_LABELS[m]}: dtype in {self.modes[m]['dtypes']}, head dim D in "
                 f"{self.modes[m]['head_dims']}" for m in ("cuda", "interpreter") if m in self.modes]
        return "; ".join(parts or ["nothing"]) + "; equal query/key lengths; no autograd"


@dataclass
class ExportMeta:
    run: str
    candidate_id: int
    target: str
    depth: int
    score: float | None
    suite: str
    device: str  # "cuda" | "interpreter": where the stored evaluation ran
    timing: str
    primary_baseline: str | None
    commit_sha: str
    lineage: list[Ancestor]  # candidate first, seed last
    shapes: list[ShapeNumbers]
    env: dict[str, Any]
    envelope: Envelope
    bench_shapes: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    measured_at: str = ""
    exported_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def op_name(self) -> str:
        safe = "".join(c if c.isalnum() else "_" for c in self.run).strip("_") or "run"
        if safe[0].isdigit():
            safe = "r" + safe
        return f"evolved::attention_{safe}_{self.candidate_id}"

    def chain_lines(self) -> list[str]:
        lines = [a.line() for a in self.lineage]
        if len(lines) > MAX_CHAIN:
            keep = MAX_CHAIN // 2
            lines = lines[:keep] + [f"... {len(lines) - 2 * keep + 1} more ancestors ..."] + lines[-keep + 1:]
        return lines

    def provenance(self) -> dict[str, Any]:
        """The PROVENANCE constant of the exported module (plain literals only)."""
        env_keys = ("gpu", "driver", "cuda", "torch", "triton", "python", "isolation")
        return _finite({
            "run": self.run,
            "candidate_id": self.candidate_id,
            "target": self.target,
            "commit": self.commit_sha,
            "depth": self.depth,
            "score": self.score,
            "suite": self.suite,
            "device": self.device,
            "timing": self.timing,
            "primary_baseline": self.primary_baseline,
            "lineage": [asdict(a) for a in self.lineage],
            "shapes": [asdict(s) for s in self.shapes],
            "validation": dict(self.validation),
            "env": {k: self.env.get(k) for k in env_keys},
            "measured_at": self.measured_at,
            "exported_at": self.exported_at,
        })

    def docstring_text(self) -> str:
        env = self.env
        score = f"{self.score:.4f}" if isinstance(self.score, (int, float)) else "n/a"
        out = [
            f"Evolved attention kernel: run {self.run!r}, candidate {self.candidate_id} "
            f"(target {self.target}).",
            "",
            "Generated by `evolve export`; needs only torch and triton.",
            "    from this_module import attention",
            "    out = attention(q, k, v, causal=True)      # q [B,Hq,S,D], k/v [B,Hkv,S,D]",
            "    python this_module.py --selftest | --bench | --provenance",
            "",
            f"Verified envelope: {self.envelope.text()}.",
            "Other inputs fall back to torch SDPA (one warning) or raise with strict=True.",
            "",
            "Provenance",
            f"  run / candidate:  {self.run} / {self.candidate_id} (commit {self.commit_sha[:12]})",
            f"  lineage depth:    {self.depth}",
            f"  score:            {score} (geomean of {self.primary_baseline or 'baseline'} ms / "
            f"kernel ms, suite {self.suite!r}, {self.device})",
            f"  timing:           {self.timing}",
            f"  measured on:      GPU {env.get('gpu') or 'none'}, driver {env.get('driver') or 'n/a'}, "
            f"CUDA {env.get('cuda') or 'n/a'}",
            f"                    torch {env.get('torch') or 'n/a'}, triton {env.get('triton') or 'n/a'}",
            f"  measured at:      {self.measured_at or 'n/a'}",
            f"  exported at:      {self.exported_at}",
            "",
            "Per-shape numbers (evaluator):",
        ]
        if not self.shapes:
            out.append("  (none recorded)")
        for s in self.shapes:
            base = ", ".join(f"{k} {v:.4f} ms = {s.flops() / v / 1e9:.3g} TFLOP/s"
                             for k, v in sorted(s.baselines.items())
                             if isinstance(v, (int, float)) and v > 0)
            out.append(f"  {s.name}:\n    kernel {_fmt(s.ms, '.4f')} ms = {_fmt(s.tflops, '.3g')} TFLOP/s, "
                       f"speedup {_fmt(s.speedup, '.3f')}" + (f" | {base}" if base else ""))
        out += ["", "Hypothesis chain (candidate first, seed last):"]
        out += [f"  {line}" for line in self.chain_lines()]
        return "\n".join(out)


def _fmt(x: Any, spec: str) -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "n/a"


def _finite(obj: Any) -> Any:
    """Replace NaN/inf (not valid Python literals) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
