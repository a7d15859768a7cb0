"""The runs view: a table of every run under the runs directory, and two runs side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard import data as dd
from evolve.read import RunNotReady, RunSummary, fmt_elapsed

RUN_KEY = "run"


def runs_frame(runs: list[RunSummary]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.name, "stored name": r.record.name, "target": r.record.target, "operator": r.record.operator,
        "model": r.record.model or "–", "status": r.status, "candidates": r.candidates, "rejected": r.rejected,
        "champion score": r.best_score, "champion": r.best_id, "seed score": r.seed_score,
        "elapsed": fmt_elapsed(r.elapsed_s), "GPU": r.gpu or "–", "cost USD": r.cost_usd,
        "started": r.record.created_at, "note": r.problem or "",
    } for r in runs])


def _on_table_select() -> None:
    rows = st.session_state["runs_table"]["selection"]["rows"]
    names = st.session_state.get("_run_names", [])
    if rows and rows[0] < len(names):
        st.session_state[RUN_KEY] = names[rows[0]]
        st.session_state["view"] = "Overview"  # open the picked run


def view(runs: list[RunSummary], runs_dir: Path) -> None:
    st.subheader("Runs")
    st.caption(f"runs directory: `{runs_dir}` · runs are named by their folder (what `evolve status RUN` "
               "takes) · select a row to open that run")
    frame = runs_frame(runs)
    st.session_state["_run_names"] = list(frame["run"])
    with st.container(key="runs"):
        st.dataframe(frame, hide_index=True, key="runs_table", on_select=_on_table_select,
                     selection_mode="single-row", column_config={
                         "champion score": st.column_config.NumberColumn(format="%.4g"),
                         "seed score": st.column_config.NumberColumn(format="%.4g"),
                         "cost USD": st.column_config.NumberColumn(format="$%.2f")})
    ready = [r.name for r in runs if r.ready]
    st.subheader("Compare two runs")
    if len(ready) < 2:
        st.caption("Side-by-side comparison needs two readable runs.")
        return
    picked = st.multiselect("runs to compare", ready, default=ready[-2:], max_selections=2, key="compare")
    if len(picked) != 2:
        st.caption("Pick two runs.")
        return
    by_name = {r.name: r for r in runs}
    loaded = []
    cols = st.columns(2)
    for col, name in zip(cols, picked):
        with col:
            st.markdown(f"#### {by_name[name].label}")
            try:
                d = dd.load_run(by_name[name].path)
            except RunNotReady as e:
                st.warning(str(e))
                continue
            loaded.append(d)
            s = d.summary
            m = st.columns(3)
            m[0].metric("champion", dd.fmt_score(s.best_score))
            m[1].metric("candidates", s.candidates)
            m[2].metric("rejected", s.rejected)
            st.caption(f"{s.record.target} · {s.record.operator} · {s.record.model or '–'} · {s.gpu} · "
                       f"{fmt_elapsed(s.elapsed_s)}")
            if not d.candidates.empty:
                st.altair_chart(charts.trajectory_chart(d, "index", "status", False), width="stretch")
    if len(loaded) == 2:
        with st.container(key="compare_chart"):
            st.altair_chart(charts.compare_chart(loaded), width="stretch")
