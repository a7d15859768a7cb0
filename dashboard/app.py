"""Evolve dashboard: watch runs of the kernel evolver, read-only.

Started by `evolve dashboard [--runs DIR] [--port P]`, or directly with
`streamlit run dashboard/app.py -- --runs DIR`. The runs directory comes from `--runs`
after `--`, else the EVOLVE_RUNS_DIR environment variable, else ./runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import data as dd  # noqa: E402
from dashboard import live, views_activity, views_candidate, views_run, views_runs  # noqa: E402
from dashboard.settings import runs_dir_from_args  # noqa: E402
from evolve.read import RunNotReady, list_runs  # noqa: E402

VIEW_PARAM = {"Overview": "overview", "Candidate": "candidate", "Compare candidates": "compare",
              "Per shape": "shapes", "Activity": "activity", "Failures & cost": "failures", "Runs": "runs"}
VIEWS = list(VIEW_PARAM)
URL_KEY = "_url"  # the query string this session last wrote


def state_from_url() -> None:
    """view/run/candidate from the URL's query string, on the first run of a session and whenever
    the URL is not the one this session last wrote (the browser's Back/Forward)."""
    qp = st.query_params
    if dict(qp) == st.session_state.get(URL_KEY):
        return
    by_param = {v: k for k, v in VIEW_PARAM.items()}
    if qp.get("view") in by_param:
        st.session_state[views_run.VIEW_KEY] = by_param[qp["view"]]
    if qp.get("run"):
        st.session_state[views_runs.RUN_KEY] = qp["run"]
    if str(qp.get("candidate", "")).isdigit():
        st.session_state[views_run.CANDIDATE_KEY] = int(qp["candidate"])


def sync_url(run: str | None, view: str) -> None:
    wanted = {"view": VIEW_PARAM[view]}
    if run:
        wanted["run"] = run
    if view == "Candidate" and isinstance(st.session_state.get(views_run.CANDIDATE_KEY), int):
        wanted["candidate"] = str(st.session_state[views_run.CANDIDATE_KEY])
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)  # a new browser history entry
    st.session_state[URL_KEY] = wanted


def sidebar(runs: list, runs_dir: Path) -> tuple[str | None, str, bool]:
    sb = st.sidebar
    sb.title("evolve")
    names = [r.name for r in runs]  # folder names: unique, and what the CLI takes
    run = None
    if names:
        if st.session_state.get(views_runs.RUN_KEY) not in names:
            running = [r.name for r in runs if r.status == "running"]
            st.session_state[views_runs.RUN_KEY] = (running or names)[-1]
        label = {r.name: f"{r.label} · {r.status}" for r in runs}
        run = sb.selectbox("run", names, key=views_runs.RUN_KEY, format_func=label.get,
                           help="run folder (the name stored in its DB beside it when different) · status")
    if st.session_state.get(views_run.VIEW_KEY) not in VIEWS:
        st.session_state[views_run.VIEW_KEY] = VIEWS[0]
    view = sb.radio("view", VIEWS, key=views_run.VIEW_KEY)
    live_on = sb.toggle("live refresh", value=True, key="live",
                        help=f"re-read the run every {live.POLL_SECONDS:g} s while it is running; "
                             "turn off to pause")
    sb.caption(f"runs directory: `{runs_dir}`")
    return run, view, live_on


def page(runs: list, run: str | None, view: str, runs_dir: Path, live_on: bool) -> tuple[bool, Path | None]:
    """Draw the chosen view; returns (whether the page waits for the run(s) to change, the run
    directory to watch)."""
    if not runs_dir.is_dir():
        st.warning(f"The runs directory `{runs_dir}` does not exist yet. Start a run with "
                   "`evolve start --target gqa`, or pass `--runs DIR`.")
        return True, None
    if not runs:
        st.info(f"No runs in `{runs_dir}` yet. Start one with `evolve start --target gqa`; "
                "this page refreshes when it appears.")
        return True, None
    summary = next(r for r in runs if r.name == run)
    if view == "Runs":
        views_runs.view(runs, runs_dir)
        return any(r.status == "running" or not r.ready for r in runs), summary.path
    try:
        data = dd.load_run(summary.path)
    except RunNotReady as e:
        st.warning(f"Run **{summary.name}** cannot be shown yet: {e}")
        return True, summary.path
    st.header(summary.label)
    if data.candidates.empty and view != "Activity":  # activity shows workers and starts before any candidate
        views_run.headline(data)
        st.info("No candidates recorded yet.")
    else:
        {"Overview": views_run.overview, "Candidate": views_candidate.view,
         "Compare candidates": views_candidate.compare, "Per shape": views_run.per_shape,
         "Activity": views_activity.view, "Failures & cost": views_run.failures_and_cost}[view](data)
    if data.live:
        st.sidebar.caption("● live: watching for new candidates" if live_on else
                           "live refresh paused")
    return data.live, summary.path


def main() -> None:
    st.set_page_config(page_title="evolve dashboard", layout="wide")
    runs_dir = runs_dir_from_args(sys.argv[1:], dict(os.environ))
    state_from_url()
    runs = list_runs(runs_dir)  # not cached: one small query per run
    run, view, live_on = sidebar(runs, runs_dir)
    st.title("Kernel evolution dashboard")
    waiting, run_dir = page(runs, run, view, runs_dir, live_on)
    sync_url(run, view)
    if waiting and live_on:
        live.watch(runs_dir, run_dir)


main()
