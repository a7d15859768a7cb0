"""Run configuration (run.toml): RunConfig, AgentConfig and a small TOML writer.

The API key is never part of any config: the agent client reads OPENAI_API_KEY from
the environment when it is created.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from evolve.selection import SelectionPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class ConfigError(Exception):
    """run.toml is missing or malformed."""


@dataclass
class AgentConfig:
    model: str = "gpt-4.1-mini"
    base_url: str | None = None
    max_usd: float | None = None
    prompts_dir: Path | None = None
    price_table: Path | None = None
    max_tool_calls: int = 40  # per session
    max_evaluations: int = 6  # per session
    max_tokens: int = 1_500_000  # per session, prompt + completion summed over requests
    stall_limit: int = 5
    max_retries: int | None = None  # None: only max_wait_min bounds the retries
    context_tokens: int = 100_000  # each request is fitted under this (agent/context.py)
    max_nudges: int = 3  # answers without a tool call that get a nudge, per session
    api: str = "auto"  # auto | chat | responses (evolve.agent.client)
    reasoning_effort: str | None = None  # sent only when set
    price: str | None = None  # "IN,OUT[,CACHED]" USD per million tokens, over the table
    request_limit_min: float = 20.0  # one streamed request, first byte to last
    max_wait_min: float = 30.0  # rate limits / 5xx: waiting per request before giving up

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("prompts_dir", "price_table"):
            if d[k] is not None:
                d[k] = str(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AgentConfig":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("prompts_dir", "price_table"):
            if kw.get(k) is not None:
                kw[k] = Path(kw[k])
        return cls(**kw)


@dataclass
class RunConfig:
    name: str
    target: str
    operator: str  # "offline" | "agent" (auto is resolved before this is written)
    seed_file: str
    suite: str  # resolved suite: "smoke" without a GPU
    rng_seed: int
    max_candidates: int | None = None  # total candidates in the run, seed included
    max_minutes: float | None = None  # wall clock per start/resume invocation
    # parent selection (evolve/selection.py): the front, random picks, tournaments
    tournament_k: int = 3
    explore_prob: float = 0.1
    crossover_prob: float = 0.2
    elite_prob: float = 0.5
    elite_k: int = 3
    eval_timeout_s: float = 600.0
    baselines: list[str] = field(default_factory=lambda: ["cudnn"])
    rematch_rounds: int = 5
    gpu: bool = False
    # scale-out (see docs/architecture.md, "Orchestrator"): evaluation workers and proposers
    executor: str = "local"  # "local" (a thread per GPU in the orchestrator) | "ray"
    ray_address: str | None = None  # --executor ray: an existing cluster (None = local Ray)
    gpus: list[int] | None = None  # GPU indices for evaluation workers (None = all visible)
    proposers: int = 1  # variation sessions in flight at once
    baseline_ttl_s: float = 600.0  # a worker reuses its cuDNN times for this long
    prescreen: bool = True  # GPU + default suite: a quick-suite pre-screen before the full one
    prescreen_ratio: float = 0.9  # quick geomean below ratio x champion's -> rejected "slow"
    worker_grace_s: float = 4200.0  # Ray: a job running longer than timeout + this is "hung"
    prestart_workers: bool = True  # each worker slot pre-starts the next evaluator worker
    overlap: bool = True  # a GPU compiles the next candidate while it times one (--no-overlap)
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        try:
            self.selection_policy()
        except ValueError as e:
            raise ConfigError(f"bad run configuration: {e}") from None

    def selection_policy(self) -> SelectionPolicy:
        return SelectionPolicy(self.tournament_k, self.explore_prob, self.crossover_prob,
                               self.elite_prob, self.elite_k)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["agent"] = self.agent.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known and k != "agent"}
        kw["agent"] = AgentConfig.from_dict(d.get("agent", {}))
        try:
            return cls(**kw)
        except TypeError as e:
            raise ConfigError(f"bad run configuration: {e}") from None


def write_run_toml(path: Path, config: RunConfig, fingerprint: dict[str, Any]) -> None:
    """Write run.toml atomically: [run], [run.agent], [fingerprint]."""
    run = config.to_dict()
    agent = run.pop("agent")
    text = "# Resolved configuration of this run (written by evolve; never holds secrets)\n"
    text += dumps({"run": {**run, "agent": agent}, "fingerprint": fingerprint})
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_run_toml(path: Path) -> tuple[RunConfig, dict[str, Any]]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"missing {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"malformed {path}: {e}") from None
    if "run" not in data:
        raise ConfigError(f"{path} has no [run] table")
    return RunConfig.from_dict(data["run"]), data.get("fingerprint", {})


# --- a small TOML writer (tables, scalars, arrays of scalars; None is omitted) ---

def dumps(data: dict[str, Any]) -> str:
    lines: list[str] = []
    _table(lines, [], data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], prefix: list[str], d: dict[str, Any]) -> None:
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in prefix) + "]")
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables.items():
        _table(lines, prefix + [str(k)], v)


def _key(k: str) -> str:
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return _string(k)


def _string(s: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL (TOML forbids it unescaped)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    return _string(str(v))
