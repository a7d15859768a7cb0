"""Live refresh: a small fragment polls lineage.db's size/mtime every few seconds and reruns
the whole app only when the run has written something."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from evolve.read import db_signature, find_run_dirs

POLL_SECONDS = 3.0


def _signature(runs_dir: Path, run_dir: Path | None) -> tuple:
    names = tuple(p.name for p in find_run_dirs(runs_dir))
    return names, db_signature(run_dir) if run_dir else ()


def watch(runs_dir: Path, run_dir: Path | None, seconds: float = POLL_SECONDS) -> None:
    """Call once per script run while live refresh is on."""
    key = "_live_signature"
    st.session_state[key] = _signature(runs_dir, run_dir)

    @st.fragment(run_every=seconds)
    def _poll() -> None:
        now = _signature(runs_dir, run_dir)
        if now != st.session_state.get(key):
            st.session_state[key] = now
            st.rerun()

    _poll()
