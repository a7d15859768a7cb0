"""Run data for the dashboard: evolve.read snapshots turned into pandas frames, cached
per run until lineage.db changes (its size/mtime signature is part of the cache key)."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import pandas as pd
import streamlit as st

from evaluator import geomean
from evolve import read

KINDS = ["ok", "pre-screen (quick shapes)", "rejected"]
CANDIDATE_COLUMNS = ["id", "parent_id", "parent2_id", "operator", "status", "score", "failure_class",
                     "failure_message", "hypothesis", "depth", "created_at", "tokens_in", "tokens_out",
                     "cost_usd", "session_id", "eval_seconds", "variation_seconds", "commit_sha"]


@dataclass
class FlexReference:
    """FlexAttention speed relative to the primary baseline, measured in this run."""

    ratio: float | None
    note: str


@dataclass
class RunData:
    summary: read.RunSummary
    snapshot: read.RunSnapshot
    candidates: pd.DataFrame
    shapes: pd.DataFrame  # one row per (candidate, shape), from each result_json's `shapes`
    sessions: pd.DataFrame
    steps: pd.DataFrame
    events: pd.DataFrame
    rematches: pd.DataFrame  # one row per `rematch` event: challenger, champion, ratio, noise, won
    workers: pd.DataFrame
    primary_baseline: str
    flex: FlexReference

    @property
    def live(self) -> bool:
        return self.summary.status == "running"


def shape_rows(snap: read.RunSnapshot) -> list[dict[str, Any]]:
    """Per-shape numbers of every candidate, as stored once in its result_json."""
    rows = []
    for c in snap.candidates:
        result = read.result_of(c)
        rows += [{**sh, "baselines": sh.get("baselines") or {}, "candidate_id": c["id"],
                  "short": read.short_shape(sh), "suite": result.get("suite")} for sh in result.get("shapes") or []]
    return rows


def rematch_rows(snap: read.RunSnapshot) -> list[dict[str, Any]]:
    rows = []
    for e in snap.events:
        if e.get("kind") == "rematch":
            d = read.json_dict(e.get("data_json"))
            rows.append({"ts": e.get("ts"), "challenger": e.get("candidate_id"), "champion": d.get("champion"),
                         "won": bool(d.get("better")), "ratio": d.get("ratio"), "noise": d.get("noise"),
                         "message": e.get("message")})
    return rows


def primary_baseline(snap: read.RunSnapshot) -> str:
    for c in reversed(snap.candidates):
        name = read.result_of(c).get("primary_baseline")
        if name:
            return str(name)
    return "cudnn"


def flex_reference(snap: read.RunSnapshot) -> FlexReference:
    """Geomean over shapes of primary_baseline_ms / flex_ms per evaluation, then the median
    over evaluations; None (with the reason) when the run never timed FlexAttention."""
    per_eval: dict[int, list[float]] = {}
    for m in shape_rows(snap):
        flex, base = m["baselines"].get("flex"), m.get("baseline_ms")
        if _positive(flex) and _positive(base):
            per_eval.setdefault(int(m["candidate_id"]), []).append(base / flex)
    if not per_eval:
        return FlexReference(None, "FlexAttention was not timed in this run (CPU runs and runs "
                                   "with baselines=('cudnn',) skip it), so no reference line is drawn.")
    ratios = [geomean(v) for v in per_eval.values()]
    ratio = median(ratios)
    return FlexReference(ratio, f"FlexAttention = {ratio:.3f} x baseline "
                                f"(median of {len(ratios)} evaluations in this run)")


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def with_champion(cands: pd.DataFrame, snap: read.RunSnapshot) -> pd.DataFrame:
    """Adds champion (the champion's id after each candidate, from the `new_best` events in id
    order; the seed until the first), champion_score, measured/prescreen (read.measured_score)
    and kind (one of KINDS: how charts draw the candidate)."""
    df = cands.sort_values("id").copy()
    crowned = {int(e["candidate_id"]) for e in snap.events
               if e.get("kind") == "new_best" and e.get("candidate_id") is not None}
    score = dict(zip(df["id"], df["score"]))
    champ, champs = None, []
    for cid, status in zip(df["id"], df["status"]):
        if int(cid) in crowned or (champ is None and cid == 0 and status == "ok"):
            champ = int(cid)
        champs.append(champ)
    df["champion"] = champs
    df["champion_score"] = pd.to_numeric(df["champion"].map(score), errors="coerce")
    by_id = sorted(snap.candidates, key=lambda c: c["id"])  # the frame's order
    df["measured"], df["prescreen"] = zip(*map(read.measured_score, by_id))
    df["kind"] = df["status"].where(df["status"] == "ok", df["prescreen"].map({True: KINDS[1], False: KINDS[2]}))
    return df


@st.cache_data(show_spinner=False, max_entries=32)
def _load(run_dir: str, signature: tuple[int, ...]) -> RunData:  # signature: cache key only
    snap = read.read_snapshot(Path(run_dir))
    cands = pd.DataFrame(snap.candidates, columns=CANDIDATE_COLUMNS)
    if not cands.empty:
        cands["created_at"] = pd.to_datetime(cands["created_at"], utc=True, errors="coerce", format="ISO8601")
        cands["score"] = pd.to_numeric(cands["score"], errors="coerce")
        cands = with_champion(cands, snap)
        cands["failure_class"] = cands["failure_class"].fillna("")
    return RunData(
        summary=read.summarize(snap), snapshot=snap, candidates=cands,
        shapes=pd.DataFrame(shape_rows(snap)), sessions=pd.DataFrame(snap.sessions),
        steps=pd.DataFrame(snap.agent_steps), events=pd.DataFrame(snap.events),
        rematches=pd.DataFrame(rematch_rows(snap)), workers=pd.DataFrame(snap.workers),
        primary_baseline=primary_baseline(snap), flex=flex_reference(snap),
    )


def load_run(run_dir: Path) -> RunData:
    """RunData for one run directory (raises read.RunNotReady)."""
    data = _load(str(Path(run_dir).resolve()), read.db_signature(Path(run_dir)))
    data.summary = read.summarize(data.snapshot)  # cheap; keeps a live run's elapsed time current
    return data


_source = st.cache_data(show_spinner=False, max_entries=256)(read.candidate_source)


def candidate_source(data: RunData, cid: int) -> str:
    return _source(data.snapshot.path, data.snapshot.candidate(cid).get("commit_sha"), cid)


def source_diff(data: RunData, a: int, b: int) -> str:
    """Unified diff of candidate a's kernel.py against candidate b's ("" when identical)."""
    old, new = candidate_source(data, a), candidate_source(data, b)
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        f"candidate {a}/kernel.py", f"candidate {b}/kernel.py"))


def fmt_score(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"

