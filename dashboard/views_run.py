"""Views of one run: the overview (headline numbers, score trajectory, lineage tree) and
failures & cost."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, tree
from dashboard.data import RunData, fmt_score
from evolve.read import fmt_elapsed

VIEW_KEY = "view"
CANDIDATE_KEY = "candidate"
CANDIDATE_VIEW = "Candidate"


def open_candidate(cid: int | None) -> None:
    """Switch to the candidate view (call from a widget callback); None (nothing picked) stays."""
    if cid is None:
        return
    st.session_state[CANDIDATE_KEY] = int(cid)
    st.session_state[VIEW_KEY] = CANDIDATE_VIEW


def lost_rematch(data: RunData, cid: int | None) -> bool:
    r = data.rematches
    return cid is not None and not r.empty and bool(((r["challenger"] == cid) & ~r["won"]).any())


def headline(data: RunData) -> None:
    s = data.summary
    cols = st.columns([1.6, 1, 1, 1.6, 1.2, 1.3] + ([1.1] if s.cost_usd else []))
    cols[0].metric("status", s.status)
    cols[1].metric("candidates", f"{s.candidates}")
    cols[2].metric("rejected", f"{s.rejected}")
    cols[3].metric(f"best: champion #{s.best_id}" if s.best_id is not None else "best: champion",
                   fmt_score(s.best_score), help="the candidate that holds the run: the seed, or the "
                   "latest challenger that won its rematch (what `evolve best` prints and export uses)")
    cols[4].metric("seed score", fmt_score(s.seed_score))
    cols[5].metric("elapsed", fmt_elapsed(s.elapsed_s))
    if s.cost_usd:
        cols[6].metric("LLM cost", f"${s.cost_usd:.2f}")
    notes = [f"target **{s.record.target}** · operator **{s.record.operator}** · model **{s.record.model or '–'}** · "
             f"suite **{s.record.suite}** · GPU **{s.gpu}** · device **{s.device or '–'}**"]
    if s.top_id is not None and s.top_id != s.best_id:
        notes.append(f"highest single score: #{s.top_id} {fmt_score(s.top_score)}"
                     + (" (lost its rematch)" if lost_rematch(data, s.top_id) else " (not the champion)"))
    if s.status == "interrupted" and s.stopped_at:
        notes.append(f"interrupted: the DB says running but no live process holds run.lock; last activity "
                     f"{s.stopped_at:%Y-%m-%d %H:%M:%S} UTC")
    st.caption(" · ".join(notes))
    if s.device and s.device != "cuda":
        st.info("Scores of this run were timed on the CPU interpreter: they say nothing about GPU speed.")


def trajectory(data: RunData) -> None:
    st.subheader("Trajectory")
    c1, c2, c3 = st.columns([1, 1, 1])
    x_axis = c1.radio("x axis", ["index", "time"], horizontal=True, key="traj_x")
    color_by = c2.radio("colour by", ["status", "operator"], horizontal=True, key="traj_color")
    gpu_run = data.summary.device == "cuda"
    lines = " and ".join(charts.reference_lines(data)["label"])
    show_base = c3.checkbox("baseline lines", value=gpu_run, key="traj_baselines",
                            help=f"horizontal lines: {lines}")
    if not show_base and not gpu_run:
        st.caption("Baseline lines are off by default for CPU-interpreter runs: their scores sit far "
                   "below the baseline's 1.0. Tick the box to draw them.")
    with st.container(key="trajectory"):
        st.altair_chart(charts.trajectory_chart(data, x_axis, color_by, show_base), width="stretch")
        strip = charts.unscored_chart(data, x_axis)
        if strip is not None:
            st.altair_chart(strip, width="stretch")
    st.caption("green step line = the champion; ringed = a rematch won (green) or lost (black); triangles = "
               "`slow` rejections at the geomean speedup their quick pre-screen measured (quick shapes only). "
               + data.flex.note)


def lineage(data: RunData) -> None:
    st.subheader("Lineage tree")
    cands = data.candidates
    st.caption("x = depth from the seed; solid edges = parent, dashed = crossover second parent; "
               "black ring = the champion. Click a node to open it.")
    with st.container(key="lineage"):
        st.altair_chart(tree.lineage_chart(cands, data.summary.best_id), width="stretch", key="lineage_chart",
                        on_select=lambda: open_candidate(tree.selected_id(st.session_state.get("lineage_chart"))),
                        selection_mode=tree.SELECTION)
    labels = candidate_labels(cands)
    st.selectbox("or open a candidate", list(labels), index=None, format_func=labels.get, key="tree_pick",
                 on_change=lambda: open_candidate(st.session_state.get("tree_pick")), placeholder="choose a candidate")


def candidate_labels(cands: pd.DataFrame) -> dict[int, str]:
    out = {}
    for r in cands.sort_values("id").itertuples():
        what = fmt_score(r.score) if r.status == "ok" else f"rejected: {r.failure_class or '?'}" + (
            f" (pre-screen {fmt_score(r.measured)})" if r.prescreen else "")
        out[int(r.id)] = f"#{int(r.id)} · {r.operator} · {what}"
    return out


def overview(data: RunData) -> None:
    headline(data)
    trajectory(data)
    lineage(data)


def per_shape(data: RunData) -> None:
    headline(data)
    st.subheader("Speedup per shape across the lineage")
    if data.shapes.empty:
        st.info("No per-shape results yet.")
        return
    suites = sorted(data.shapes["suite"].dropna().unique())
    suite = st.radio("suite", suites, horizontal=True, key="heat_suite",
                     index=suites.index(data.summary.record.suite) if data.summary.record.suite in suites else 0)
    st.caption("speedup = baseline ms / candidate ms per shape (blue > 1 beats the baseline); shape = "
               "B x Hq/Hkv, head dim, sequence length, c = causal. `quick` rows are pre-screens.")
    with st.container(key="heatmap"):
        st.altair_chart(charts.heatmap_chart(data.shapes[data.shapes["suite"] == suite]), width="stretch")


def failures_and_cost(data: RunData) -> None:
    headline(data)
    cands = data.candidates
    st.subheader("Failures")
    failed = cands[cands["status"] != "ok"]
    if failed.empty:
        st.success("No rejected candidates in this run.")
    else:
        x_axis = st.radio("x axis", ["index", "time"], horizontal=True, key="fail_x")
        with st.container(key="failures"):
            st.altair_chart(charts.failures_chart(data, x_axis), width="stretch")
        counts = failed.groupby("failure_class").agg(count=("id", "size"), last=("id", "max")).reset_index()
        counts["share"] = counts["count"] / len(cands)
        names = {"failure_class": "failure class", "failure_message": "message", "last": "last id"}
        st.dataframe(counts.sort_values("count", ascending=False), hide_index=True,
                     column_config={"share": st.column_config.NumberColumn(format="percent"), **names})
        recent = failed.sort_values("id", ascending=False).head(20)
        st.dataframe(recent[["id", "operator", "failure_class", "failure_message"]], hide_index=True,
                     column_config=names)
    st.subheader("Tokens and cost")
    spend = charts.spend_frame(data)
    if spend.empty or (spend["tokens"].iloc[-1] == 0 and spend["usd"].iloc[-1] == 0):
        st.info("No LLM tokens were spent in this run (offline operator or no agent sessions yet).")
        return
    st.write(f"**{int(spend['tokens'].iloc[-1]):,}** tokens, **${spend['usd'].iloc[-1]:.4f}** "
             f"over {len(spend)} {'sessions' if not data.sessions.empty else 'candidates'}")
    with st.container(key="spend"):
        st.altair_chart(charts.spend_charts(data), width="stretch")
    if not data.sessions.empty:
        cols = [c for c in ("id", "candidate_id", "outcome", "reason", "tool_calls", "evaluations",
                            "tokens_in", "tokens_out", "cost_usd", "started_at", "ended_at")
                if c in data.sessions.columns]
        st.dataframe(data.sessions[cols], hide_index=True)
