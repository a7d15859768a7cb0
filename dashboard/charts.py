"""Altair charts: score trajectory, failure classes and LLM spend over time, run comparison."""

from __future__ import annotations

import altair as alt
import pandas as pd

from dashboard.data import RunData

FAIL_Y = 0.0  # failed candidates have no score: drawn as crosses on the x axis
STATUS_COLORS = alt.Scale(domain=["ok", "rejected"], range=["#1f77b4", "#d62728"])


def _x(x_axis: str) -> alt.X:
    if x_axis == "time":
        return alt.X("created_at:T", title="time (UTC)")
    return alt.X("id:Q", title="candidate index", axis=alt.Axis(tickMinStep=1, format="d"))


def _color(color_by: str) -> alt.Color:
    if color_by == "status":
        return alt.Color("status:N", scale=STATUS_COLORS, title="status")
    return alt.Color("operator:N", title="operator")


def _tooltip() -> list:
    return [alt.Tooltip("id:Q", title="candidate"), "operator:N", "status:N",
            alt.Tooltip("score:Q", format=".4g"), "failure_class:N",
            alt.Tooltip("created_at:T", format="%H:%M:%S"), "hypothesis:N"]


def _reference_rules(data: RunData) -> pd.DataFrame:
    rows = [{"y": 1.0, "label": f"{data.primary_baseline} baseline = 1.0", "kind": "baseline"}]
    seed = data.candidates.loc[data.candidates["id"] == 0, "score"]
    if len(seed) and pd.notna(seed.iloc[0]):
        rows.append({"y": float(seed.iloc[0]), "label": f"seed {seed.iloc[0]:.4g}", "kind": "seed"})
    if data.flex.ratio is not None:
        rows.append({"y": data.flex.ratio, "label": f"FlexAttention {data.flex.ratio:.3f}", "kind": "flex"})
    return pd.DataFrame(rows)


def trajectory_chart(data: RunData, x_axis: str = "index", color_by: str = "status",
                     show_baselines: bool = True) -> alt.LayerChart:
    """Every candidate's score; failures as red crosses at 0; best-so-far as a step line;
    seed, baseline (=1.0) and measured FlexAttention as horizontal reference lines."""
    df = data.candidates.copy()
    df["plot_score"] = df["score"].where(df["status"] == "ok", FAIL_Y)
    x = _x(x_axis)
    y = alt.Y("plot_score:Q", title="score (x baseline, higher is better)")
    ok = alt.Chart(df[df["status"] == "ok"]).mark_circle(size=90, opacity=0.85).encode(
        x=x, y=y, color=_color(color_by), tooltip=_tooltip())
    failed = alt.Chart(df[df["status"] != "ok"]).mark_point(shape="cross", size=110, filled=True).encode(
        x=x, y=y, color=_color(color_by) if color_by == "operator" else alt.value("#d62728"),
        tooltip=_tooltip())
    best = alt.Chart(df.dropna(subset=["best_so_far"])).mark_line(
        interpolate="step-after", color="#2ca02c", strokeWidth=2).encode(
        x=x, y=alt.Y("best_so_far:Q"), tooltip=[alt.Tooltip("best_so_far:Q", format=".4g", title="best so far")])
    layers = [best, ok, failed]
    refs = _reference_rules(data)
    if not show_baselines:
        refs = refs[refs["kind"] == "seed"]
    if not refs.empty:
        dash = alt.StrokeDash("kind:N", scale=alt.Scale(domain=["baseline", "seed", "flex"],
                                                       range=[[6, 3], [2, 2], [8, 2, 2, 2]]), legend=None)
        rules = alt.Chart(refs).mark_rule(color="#7f7f7f").encode(y="y:Q", strokeDash=dash, tooltip=["label:N"])
        text = alt.Chart(refs).mark_text(align="left", dx=4, dy=-6, color="#555").encode(
            y="y:Q", x=alt.value(2), text="label:N")
        layers += [rules, text]
    return alt.layer(*layers).properties(height=380, title="Score trajectory")


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
        x = alt.X("id:Q", bin=alt.Bin(maxbins=30, minstep=1), title="candidate index",
                  axis=alt.Axis(format="d"))
    return alt.Chart(df).mark_bar().encode(
        x=x, y=alt.Y("count():Q", title="failed candidates"),
        color=alt.Color("failure_class:N", title="failure class"),
        tooltip=["failure_class:N", "count():Q"]).properties(height=260, title="Failure classes over time")


def spend_frame(data: RunData) -> pd.DataFrame:
    """Cumulative tokens and USD over time: from agent sessions when there are any (they
    include sessions that gave up), else from the candidates."""
    if not data.sessions.empty:
        df = data.sessions.rename(columns={"ended_at": "ts"})[["ts", "tokens_in", "tokens_out", "cost_usd"]]
    else:
        df = data.candidates.rename(columns={"created_at": "ts"})[["ts", "tokens_in", "tokens_out", "cost_usd"]]
    df = df.copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True, errors="coerce", format="ISO8601")
    df = df.dropna(subset=["ts"]).sort_values("ts")
    for c in ("tokens_in", "tokens_out", "cost_usd"):
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0)
    df["tokens"] = (df["tokens_in"] + df["tokens_out"]).cumsum()
    df["usd"] = df["cost_usd"].cumsum()
    return df


def spend_charts(data: RunData) -> alt.HConcatChart:
    df = spend_frame(data)
    x = alt.X("ts:T", title="time (UTC)")
    tokens = alt.Chart(df).mark_line(point=True, interpolate="step-after").encode(
        x=x, y=alt.Y("tokens:Q", title="tokens (in + out), cumulative"),
        tooltip=[alt.Tooltip("ts:T", format="%H:%M:%S"), "tokens:Q"]).properties(title="Tokens", height=240)
    usd = alt.Chart(df).mark_line(point=True, color="#ff7f0e", interpolate="step-after").encode(
        x=x, y=alt.Y("usd:Q", title="USD, cumulative"),
        tooltip=[alt.Tooltip("ts:T", format="%H:%M:%S"), alt.Tooltip("usd:Q", format="$.4f")]).properties(
        title="Cost", height=240)
    return alt.hconcat(tokens, usd)


def compare_chart(runs: list[RunData]) -> alt.Chart:
    """Best-so-far of several runs against candidate index, one colour per run."""
    frames = []
    for d in runs:
        df = d.candidates[["id", "best_so_far", "score", "status"]].copy()
        df["run"] = d.summary.name
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return alt.Chart(df.dropna(subset=["best_so_far"])).mark_line(interpolate="step-after", point=True).encode(
        x=alt.X("id:Q", title="candidate index", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("best_so_far:Q", title="best score so far"),
        color=alt.Color("run:N"), tooltip=["run:N", "id:Q", alt.Tooltip("best_so_far:Q", format=".4g")],
    ).properties(height=300, title="Best score so far")
