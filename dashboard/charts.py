"""Altair charts: score trajectory, failures, spend, throughput, workers, per-shape heat map, runs."""

from __future__ import annotations

import altair as alt
import pandas as pd

from dashboard.data import KINDS, RunData

# How each kind of candidate is drawn, the same in every chart and legend.
KIND_COLORS = alt.Scale(domain=KINDS, range=["#1f77b4", "#ff7f0e", "#d62728"])
KIND_SHAPES = alt.Scale(domain=KINDS, range=["circle", "triangle-up", "cross"])
TIME = alt.Tooltip("created_at:T", format="%H:%M:%S", title="time (UTC)")


def _x(x_axis: str, df: pd.DataFrame) -> alt.X:
    """The x axis over the whole (non-empty) candidates frame, so that two charts over parts of it
    line up."""
    if x_axis == "time":
        ts = df["created_at"].dropna()
        scale = alt.Scale(domain=[t.isoformat() for t in (ts.min(), ts.max())]) if len(ts) else alt.Undefined
        return alt.X("created_at:T", title="time (UTC)", scale=scale)
    return alt.X("id:Q", title="candidate id", axis=alt.Axis(tickMinStep=1, format="d"),
                 scale=alt.Scale(domain=[int(df["id"].min()), int(df["id"].max())]))


def tooltip() -> list:
    return [alt.Tooltip("id:Q", title="candidate id"), alt.Tooltip("operator:N", title="operator"),
            alt.Tooltip("kind:N", title="outcome"), alt.Tooltip("measured:Q", format=".4g", title="score"),
            alt.Tooltip("failure_class:N", title="failure class"), TIME,
            alt.Tooltip("hypothesis:N", title="hypothesis")]


def reference_lines(data: RunData) -> pd.DataFrame:
    rows = [{"y": 1.0, "label": f"{data.primary_baseline} baseline = 1.0", "kind": "baseline"}]
    if data.flex.ratio is not None:
        rows.append({"y": data.flex.ratio, "label": f"FlexAttention {data.flex.ratio:.3f}", "kind": "flex"})
    return pd.DataFrame(rows)


def trajectory_chart(data: RunData, x_axis: str = "index", color_by: str = "status",
                     show_baselines: bool = True) -> alt.LayerChart:
    """Every measured score (pre-screen quick scores as triangles) on an auto-scaled axis, the
    champion as a step line, rematch wins/losses ringed; optional baseline/FlexAttention lines.
    Rejections without a score are drawn by `unscored_chart`."""
    df = data.candidates
    x = _x(x_axis, df)
    y = alt.Y("measured:Q", title="score (x baseline, higher is better)", scale=alt.Scale(zero=False))
    color = (alt.Color("kind:N", scale=KIND_COLORS, title="candidate", legend=alt.Legend(orient="right"))
             if color_by == "status" else alt.Color("operator:N", title="operator"))
    scored = df.dropna(subset=["measured"])
    points = alt.Chart(scored).mark_point(filled=True, size=70, opacity=0.85).encode(
        x=x, y=y, color=color, shape=alt.Shape("kind:N", scale=KIND_SHAPES, title="candidate"), tooltip=tooltip())
    champ = alt.Chart(df.dropna(subset=["champion_score"])).mark_line(
        interpolate="step-after", color="#2ca02c", strokeWidth=2).encode(
        x=x, y=alt.Y("champion_score:Q"), tooltip=[alt.Tooltip("champion:Q", title="champion"),
                                                  alt.Tooltip("champion_score:Q", format=".4g", title="champion score")])
    layers = [champ, points]
    if not data.rematches.empty:
        rm = data.rematches.merge(df[["id", "measured", "created_at"]], left_on="challenger", right_on="id")
        rm["rematch"] = rm["won"].map({True: "won its rematch", False: "lost its rematch"})
        layers.append(alt.Chart(rm).mark_point(size=320, strokeWidth=2.5, filled=False).encode(
            x=x, y=y, stroke=alt.Stroke("rematch:N", title="rematch", scale=alt.Scale(
                domain=["won its rematch", "lost its rematch"], range=["#2ca02c", "#000000"])),
            tooltip=[alt.Tooltip("challenger:Q", title="challenger"), alt.Tooltip("champion:Q", title="against"),
                     alt.Tooltip("rematch:N", title="result"), alt.Tooltip("ratio:Q", format=".3f", title="ratio"),
                     alt.Tooltip("noise:Q", format=".3f", title="noise")]))
    refs = reference_lines(data)
    if show_baselines:
        layers.append(alt.Chart(refs).mark_rule(color="#7f7f7f", strokeDash=[6, 3]).encode(
            y="y:Q", tooltip=[alt.Tooltip("label:N", title="reference")]))
        layers.append(alt.Chart(refs).mark_text(align="left", dx=4, dy=-6, color="#555").encode(
            y="y:Q", x=alt.value(2), text="label:N"))
    return alt.layer(*layers).properties(height=360, title="Score trajectory")


def unscored_chart(data: RunData, x_axis: str = "index") -> alt.Chart | None:
    """Rejections without any measured score, one row per failure class, on the trajectory's x."""
    df = data.candidates
    unscored = df[df["measured"].isna()]
    if unscored.empty:
        return None
    return alt.Chart(unscored).mark_point(shape="cross", filled=True, size=80, color=KIND_COLORS.range[2]).encode(
        x=_x(x_axis, df), y=alt.Y("failure_class:N", title=None), tooltip=tooltip()).properties(
        height=28 * max(2, unscored["failure_class"].nunique()), title="Rejected without a score")


def failures_chart(data: RunData, x_axis: str = "index") -> alt.Chart:
    """Failure classes over time (stacked counts per bin of candidates)."""
    df = data.candidates[data.candidates["status"] != "ok"].copy()
    if x_axis == "time":
        ts = pd.to_datetime(df["created_at"], utc=True)
        span_h = (ts.max() - ts.min()).total_seconds() / 3600 if len(ts) else 0
        unit, per = (("yearmonthdatehoursminutes", "minute") if span_h < 3 else
                     ("yearmonthdatehours", "hour") if span_h < 72 else ("yearmonthdate", "day"))
        x = alt.X(f"{unit}(created_at):T", title=f"time (UTC, per {per})")
    else:
        x = alt.X("id:Q", bin=alt.Bin(maxbins=30, minstep=1), title="candidate id",
                  axis=alt.Axis(format="d"))
    return alt.Chart(df).mark_bar().encode(
        x=x, y=alt.Y("count():Q", title="failed candidates"),
        color=alt.Color("failure_class:N", title="failure class"),
        tooltip=[alt.Tooltip("failure_class:N", title="failure class"),
                 alt.Tooltip("count():Q", title="candidates")]).properties(height=260, title="Failure classes over time")


def spend_frame(data: RunData) -> pd.DataFrame:
    """Cumulative tokens and USD over time: from agent sessions when there are any (they
    include sessions that gave up), else from the candidates."""
    source, ts = (data.sessions, "ended_at") if not data.sessions.empty else (data.candidates, "created_at")
    df = source.rename(columns={ts: "ts"})[["ts", "tokens_in", "tokens_out", "cost_usd"]].copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True, errors="coerce", format="ISO8601")
    df = df.dropna(subset=["ts"]).sort_values("ts")
    for c in ("tokens_in", "tokens_out", "cost_usd"):
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0)
    df["tokens"] = (df["tokens_in"] + df["tokens_out"]).cumsum()
    df["usd"] = df["cost_usd"].cumsum()
    return df


def spend_charts(data: RunData) -> alt.HConcatChart:
    """Cumulative tokens and USD side by side (spend_frame)."""
    df, x = spend_frame(data), alt.X("ts:T", title="time (UTC)")
    return alt.hconcat(*[alt.Chart(df).mark_line(point=True, color=color, interpolate="step-after").encode(
        x=x, y=alt.Y(f"{col}:Q", title=f"{what}, cumulative"),
        tooltip=[alt.Tooltip("ts:T", format="%H:%M:%S", title="time (UTC)"),
                 alt.Tooltip(f"{col}:Q", format=fmt, title=f"{what.split()[0]} so far")]
    ).properties(title=title, height=240)
        for col, what, fmt, color, title in (("tokens", "tokens (in + out)", alt.Undefined, "#1f77b4", "Tokens"),
                                             ("usd", "USD", "$.4f", "#ff7f0e", "Cost"))])


def compare_chart(runs: list[RunData]) -> alt.Chart:
    """The champion's score of several runs against candidate id, one colour per run."""
    df = pd.concat([d.candidates[["id", "champion_score"]].assign(run=d.summary.name) for d in runs],
                   ignore_index=True)
    return alt.Chart(df.dropna(subset=["champion_score"])).mark_line(interpolate="step-after", point=True).encode(
        x=alt.X("id:Q", title="candidate id", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("champion_score:Q", title="champion's score", scale=alt.Scale(zero=False)),
        color=alt.Color("run:N"), tooltip=[alt.Tooltip("run:N", title="run"), alt.Tooltip("id:Q", title="candidate id"),
                                           alt.Tooltip("champion_score:Q", format=".4g", title="champion's score")],
    ).properties(height=300, title="Champion's score")


def throughput_charts(data: RunData) -> alt.HConcatChart:
    """Candidates recorded per minute, and each candidate's evaluation time, over time."""
    df = data.candidates.dropna(subset=["created_at"])
    x = alt.X("created_at:T", title="time (UTC)", axis=alt.Axis(format="%H:%M"))
    rate = alt.Chart(df).mark_bar().encode(
        x=alt.X("yearmonthdatehoursminutes(created_at):T", title="time (UTC, per minute)",
                axis=alt.Axis(format="%H:%M")),
        y=alt.Y("count():Q", title="candidates recorded"), color=alt.Color("kind:N", scale=KIND_COLORS, title="candidate"),
        tooltip=[alt.Tooltip("yearmonthdatehoursminutes(created_at):T", title="minute", format="%H:%M"),
                 alt.Tooltip("count():Q", title="candidates")]).properties(title="Throughput", height=240)
    evals = alt.Chart(df).mark_point(filled=True).encode(
        x=x, y=alt.Y("eval_seconds:Q", title="evaluation time (s)"), color=alt.Color("kind:N", scale=KIND_COLORS),
        shape=alt.Shape("kind:N", scale=KIND_SHAPES, legend=None),
        tooltip=[alt.Tooltip("id:Q", title="candidate id"), alt.Tooltip("eval_seconds:Q", format=".1f", title="seconds"),
                 alt.Tooltip("kind:N", title="outcome"), TIME]).properties(title="Evaluation time", height=240)
    return alt.hconcat(rate, evals)


def workers_chart(workers: pd.DataFrame) -> alt.Chart:
    """Each worker's GPU: cumulative seconds timing (the gate held) and idle, from its last snapshot."""
    activities = {"timing_s": "GPU timing", "gpu_idle_s": "GPU idle"}
    long = workers.melt(id_vars=["name"], value_vars=list(activities), var_name="activity", value_name="seconds")
    long["activity"] = long["activity"].map(activities)
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("name:N", title="worker"), x=alt.X("seconds:Q", stack="normalize", title="share of its time"),
        color=alt.Color("activity:N", sort=list(activities.values()), title="activity", scale=alt.Scale(
            domain=list(activities.values()), range=["#1f77b4", "#dddddd"])),
        tooltip=[alt.Tooltip("name:N", title="worker"), alt.Tooltip("activity:N", title="activity"),
                 alt.Tooltip("seconds:Q", format=".0f", title="seconds")]).properties(height=90 + 30 * len(workers))


def heatmap_chart(shapes: pd.DataFrame) -> alt.Chart:
    """Speedup per shape (rows) x candidate (columns), diverging around 1.0 = baseline."""
    return alt.Chart(shapes).mark_rect().encode(
        x=alt.X("candidate_id:O", title="candidate id"),
        y=alt.Y("short:N", title="shape", sort=None, axis=alt.Axis(labelOverlap=False)),
        color=alt.Color("speedup:Q", title="speedup", scale=alt.Scale(scheme="redblue", domainMid=1.0)),
        tooltip=[alt.Tooltip("candidate_id:Q", title="candidate"), alt.Tooltip("name:N", title="shape"),
                 alt.Tooltip("speedup:Q", format=".3f", title="speedup"), alt.Tooltip("ms:Q", format=".4f", title="ms"),
                 alt.Tooltip("suite:N", title="suite")]).properties(height=26 * shapes["short"].nunique() + 40)
