"""Run data for the dashboard: evolve.read snapshots turned into pandas frames, cached
per run until lineage.db changes (its size/mtime signature is part of the cache key)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import pandas as pd
import streamlit as st

from evolve import read

CANDIDATE_COLUMNS = ["id", "parent_id", "parent2_id", "operator", "status", "score", "failure_class",
                     "failure_message", "hypothesis", "depth", "created_at", "tokens_in", "tokens_out",
                     "cost_usd", "session_id", "eval_seconds", "variation_seconds", "commit_sha"]


@dataclass
class FlexReference:
    """FlexAttention speed relative to the primary baseline, measured in this run."""

    ratio: float | None
    evaluations: int
    note: str


@dataclass
class RunData:
    summary: read.RunSummary
    snapshot: read.RunSnapshot
    candidates: pd.DataFrame
    measurements: pd.DataFrame
    sessions: pd.DataFrame
    steps: pd.DataFrame
    events: pd.DataFrame
    primary_baseline: str
    flex: FlexReference

    @property
    def live(self) -> bool:
        return self.summary.status == "running"


def _frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if columns:
        for c in columns:
            if c not in df.columns:
                df[c] = None
    return df


def _result(c: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(c.get("result_json") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def primary_baseline(snap: read.RunSnapshot) -> str:
    for c in reversed(snap.candidates):
        name = _result(c).get("primary_baseline")
        if name:
            return str(name)
    return "cudnn"


def flex_reference(snap: read.RunSnapshot) -> FlexReference:
    """Geomean over shapes of primary_baseline_ms / flex_ms per evaluation, then the median
    over evaluations; None (with the reason) when the run never timed FlexAttention."""
    per_eval: dict[int, list[float]] = {}
    for m in snap.measurements:
        try:
            baselines = json.loads(m.get("baselines_json") or "{}")
        except ValueError:
            continue
        flex, base = baselines.get("flex"), m.get("baseline_ms")
        if _positive(flex) and _positive(base):
            per_eval.setdefault(int(m["candidate_id"]), []).append(math.log(base / flex))
    if not per_eval:
        return FlexReference(None, 0, "FlexAttention was not timed in this run (CPU runs and runs "
                                      "with baselines=('cudnn',) skip it), so no reference line is drawn.")
    ratios = [math.exp(sum(v) / len(v)) for v in per_eval.values()]
    ratio = median(ratios)
    return FlexReference(ratio, len(ratios), f"FlexAttention = {ratio:.3f} x baseline "
                                             f"(median of {len(ratios)} evaluations in this run)")


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def with_best_so_far(cands: pd.DataFrame) -> pd.DataFrame:
    """Adds best_so_far: the running max of ok scores in id order (NaN before the first)."""
    df = cands.sort_values("id").copy()
    ok_score = df["score"].where(df["status"] == "ok")
    df["best_so_far"] = pd.to_numeric(ok_score, errors="coerce").cummax()
    return df


@st.cache_data(show_spinner=False, max_entries=32)
def _load(run_dir: str, signature: tuple[int, ...]) -> RunData:  # signature: cache key only
    snap = read.read_snapshot(Path(run_dir))
    cands = _frame(snap.candidates, CANDIDATE_COLUMNS)
    if not cands.empty:
        cands["created_at"] = pd.to_datetime(cands["created_at"], utc=True, errors="coerce", format="ISO8601")
        cands["score"] = pd.to_numeric(cands["score"], errors="coerce")
        cands = with_best_so_far(cands)
        cands["failure_class"] = cands["failure_class"].fillna("")
    return RunData(
        summary=read.summarize(snap), snapshot=snap, candidates=cands,
        measurements=_frame(snap.measurements), sessions=_frame(snap.sessions),
        steps=_frame(snap.agent_steps), events=_frame(snap.events),
        primary_baseline=primary_baseline(snap), flex=flex_reference(snap),
    )


def load_run(run_dir: Path) -> RunData:
    """RunData for one run directory (raises read.RunNotReady)."""
    data = _load(str(Path(run_dir).resolve()), read.db_signature(Path(run_dir)))
    data.summary = read.summarize(data.snapshot)  # cheap; keeps a live run's elapsed time current
    return data


@st.cache_data(show_spinner=False, max_entries=256)
def _source(run_dir: str, commit_sha: str | None, cid: int) -> str:
    return read.candidate_source(Path(run_dir), commit_sha, cid)


def candidate_source(data: RunData, cid: int) -> str:
    c = data.snapshot.candidate(cid)
    return _source(str(data.snapshot.path), c.get("commit_sha"), cid)


def candidate_diff(data: RunData, cid: int) -> str | None:
    c = data.snapshot.candidate(cid)
    if c.get("parent_id") is None:
        return None
    pid = int(c["parent_id"])
    old, new = candidate_source(data, pid), candidate_source(data, cid)
    return read.unified_diff(old, new, f"candidate {pid}/kernel.py", f"candidate {cid}/kernel.py")


def list_runs(runs_dir: Path) -> list[read.RunSummary]:
    """Summaries of every run under runs_dir (not cached: one small query per run)."""
    return read.list_runs(runs_dir)


def fmt_score(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def fmt_elapsed(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
