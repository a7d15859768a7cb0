"""The activity view of one run: evaluation workers, throughput, rematches and stop reasons."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.data import RunData
from dashboard.views_run import headline

LIFECYCLE = ("start", "resume", "stop", "operator_error", "warning")


def view(data: RunData) -> None:
    headline(data)
    workers(data.workers)
    st.subheader("Throughput and evaluation time")
    if data.candidates.empty:
        st.info("No candidates recorded yet.")
    else:
        st.caption("Per candidate, from its record: when it was recorded and its evaluation's wall "
                   "time (`eval_seconds`, pre-screens included).")
        with st.container(key="throughput"):
            st.altair_chart(charts.throughput_charts(data), width="stretch")
    rematches(data)
    lifecycle(data)


def workers(frame: pd.DataFrame) -> None:
    st.subheader("Evaluation workers")
    if frame.empty:
        st.caption("This run recorded no worker snapshots (runs before the `workers` table have none).")
        return
    w = frame.copy()
    if "gpu_idle_s" not in w:  # runs before the GPU gate: the GPU was idle whenever not timing
        w["gpu_idle_s"] = pd.to_numeric(w["busy_s"], errors="coerce").fillna(0.0) + pd.to_numeric(
            w["idle_s"], errors="coerce").fillna(0.0) - pd.to_numeric(w["timing_s"], errors="coerce").fillna(0.0)
    for c in ("busy_s", "compile_s", "timing_s", "idle_s", "gpu_idle_s"):
        w[c] = pd.to_numeric(w[c], errors="coerce").fillna(0.0)
    w["busy %"] = (100 * w["busy_s"] / (w["busy_s"] + w["idle_s"]).where(lambda t: t > 0)).round(1)
    st.caption("Each worker's LAST snapshot (the `workers` table keeps one per worker, updated every 2 s "
               "while the loop runs), cumulative seconds: compile = a job in its CPU part (import, "
               "precompile), timing = the GPU gate held (correctness, timing), GPU idle = the gate free; "
               "with overlap the next job compiles while one times. The chart: the GPU's share.")
    with st.container(key="workers"):
        st.altair_chart(charts.workers_chart(w), width="stretch")
    st.dataframe(w[["name", "gpu", "state", "job_id", "jobs_done", "busy %", "compile_s", "timing_s",
                    "gpu_idle_s", "idle_s", "restarts", "updated"]], hide_index=True, column_config={
        "job_id": "job", "jobs_done": "jobs", "compile_s": st.column_config.NumberColumn("compile s", format="%.0f"),
        "timing_s": st.column_config.NumberColumn("timing s", format="%.0f"),
        "gpu_idle_s": st.column_config.NumberColumn("GPU idle s", format="%.0f"),
        "idle_s": st.column_config.NumberColumn("idle s", format="%.0f")})


def rematches(data: RunData) -> None:
    st.subheader("Rematches")
    r = data.rematches
    if r.empty:
        st.caption("No rematch yet: a GPU challenger whose score beats the champion's is re-timed "
                   "against it, interleaved, before it may become the champion.")
        return
    st.dataframe(r.assign(result=r["won"].map({True: "won", False: "lost"}))[
        ["ts", "challenger", "champion", "result", "ratio", "noise", "message"]], hide_index=True, column_config={
        "ts": "time (UTC)", "ratio": st.column_config.NumberColumn(format="%.3f"),
        "noise": st.column_config.NumberColumn(format="%.3f")})


def lifecycle(data: RunData) -> None:
    st.subheader("Starts, stops and warnings")
    ev = data.events
    rows = ev[ev["kind"].isin(LIFECYCLE)] if not ev.empty else ev
    s = data.summary
    if s.status == "interrupted":
        st.warning(f"No stop was recorded: the loop died (last activity {s.stopped_at:%Y-%m-%d %H:%M:%S} "
                   "UTC). `evolve resume` continues it." if s.stopped_at else "The loop died without a stop.")
    if rows.empty:
        st.caption("No lifecycle events recorded.")
        return
    st.dataframe(rows[["ts", "kind", "message"]], hide_index=True, column_config={"ts": "time (UTC)"})
