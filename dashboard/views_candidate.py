"""The candidate view: numbers, hypothesis, failure, per-shape table, source, diff against
the parent, and the agent transcript of the session that produced it."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import data as dd
from dashboard.views_run import CANDIDATE_KEY, candidate_labels, open_candidate
from evolve.read import RunNotReady

SHAPE_COLUMNS = ["shape", "B", "Hq", "Hkv", "S", "D", "causal", "dtype", "ms", "tflops", "baseline_ms",
                 "speedup", "error", "error_ratio"]


def _on_parent(pid: int) -> None:
    open_candidate(pid)


def view(data: dd.RunData) -> None:
    cands = data.candidates
    if cands.empty:
        st.info("No candidates recorded yet.")
        return
    labels = candidate_labels(cands)
    if st.session_state.get(CANDIDATE_KEY) not in labels:
        st.session_state[CANDIDATE_KEY] = data.summary.best_id if data.summary.best_id is not None else 0
        if st.session_state[CANDIDATE_KEY] not in labels:
            st.session_state[CANDIDATE_KEY] = next(iter(labels))
    cid = st.selectbox("candidate", list(labels), format_func=labels.get, key=CANDIDATE_KEY)
    c: dict[str, Any] = data.snapshot.candidate(int(cid))
    st.subheader(f"Candidate {cid}")
    cols = st.columns(5)
    cols[0].metric("status", c["status"])
    cols[1].metric("score", dd.fmt_score(c.get("score")))
    cols[2].metric("operator", c.get("operator") or "–")
    cols[3].metric("depth", c.get("depth", 0))
    cols[4].metric("eval time", f"{float(c.get('eval_seconds') or 0):.1f} s")
    parents = [p for p in (c.get("parent_id"), c.get("parent2_id")) if p is not None]
    if parents:
        pcols = st.columns(len(parents) + 2)
        for i, p in enumerate(parents):
            pcols[i].button(f"open parent #{int(p)}", key=f"open_parent_{i}", on_click=_on_parent, args=(int(p),))
    st.markdown(f"**Hypothesis.** {c.get('hypothesis') or '–'}")
    if c["status"] != "ok":
        st.error(f"**{c.get('failure_class') or 'rejected'}**: {c.get('failure_message') or '(no message)'}")
    changes = _loads(c.get("changes_json"))
    if changes:
        with st.expander("changes (operator's record)"):
            st.json(changes)
    st.markdown(f"commit `{c.get('commit_sha') or '–'}` · created {c.get('created_at')} · "
                f"variation {float(c.get('variation_seconds') or 0):.1f} s")
    shapes(data, int(cid))
    code(data, int(cid))
    transcript(data, c)


def _loads(text: Any) -> dict[str, Any]:
    try:
        v = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def shapes(data: dd.RunData, cid: int) -> None:
    st.markdown("#### Per-shape results")
    m = data.measurements
    rows = m[m["candidate_id"] == cid] if not m.empty else m
    if rows.empty:
        st.caption("No per-shape measurements (a rejected candidate is not timed).")
        return
    table = rows[[c for c in SHAPE_COLUMNS if c in rows.columns]].copy()
    if "baselines_json" in rows.columns:
        base = [_loads(t) for t in rows["baselines_json"]]
        for name in sorted({k for b in base for k in b}):
            table[f"{name} ms"] = [b.get(name) for b in base]
    fmt = st.column_config.NumberColumn
    st.dataframe(table, hide_index=True, column_config={
        "ms": fmt("ms", format="%.4f"), "baseline_ms": fmt("baseline ms", format="%.4f"),
        "tflops": fmt("TFLOP/s", format="%.3f"), "speedup": fmt("speedup", format="%.3f"),
        "error": fmt("max error", format="%.2e"), "error_ratio": fmt("error ratio", format="%.2f")})
    result = _loads(data.snapshot.candidate(cid).get("result_json"))
    if result.get("timing"):
        st.caption(f"timing: {result['timing']} · primary baseline: {result.get('primary_baseline')}")


def code(data: dd.RunData, cid: int) -> None:
    src_tab, diff_tab = st.tabs(["source", "diff against parent"])
    try:
        src = dd.candidate_source(data, cid)
        diff = dd.candidate_diff(data, cid)
    except (RunNotReady, KeyError) as e:
        src_tab.warning(str(e))
        diff_tab.warning(str(e))
        return
    src_tab.code(src, language="python", line_numbers=True)
    if diff is None:
        diff_tab.caption("The seed has no parent.")
    elif not diff:
        diff_tab.caption("Identical to its parent.")
    else:
        diff_tab.code(diff, language="diff")


def transcript(data: dd.RunData, c: dict[str, Any]) -> None:
    st.markdown("#### Agent transcript")
    sid = c.get("session_id")
    if not sid:
        st.caption(f"No agent session: made by the {c.get('operator')} operator.")
        return
    sess = data.sessions[data.sessions["id"] == sid] if not data.sessions.empty else pd.DataFrame()
    if not sess.empty:
        s = sess.iloc[0]
        st.markdown(f"session `{sid}` · model **{s.get('model')}** · outcome **{s.get('outcome')}** · "
                    f"{int(s.get('tool_calls') or 0)} tool calls · {int(s.get('evaluations') or 0)} evaluations · "
                    f"{int(s.get('tokens_in') or 0):,} in / {int(s.get('tokens_out') or 0):,} out tokens · "
                    f"${float(s.get('cost_usd') or 0):.4f}")
        if s.get("reason"):
            st.caption(f"reason: {s.get('reason')}")
    steps = data.steps[data.steps["session_id"] == sid] if not data.steps.empty else pd.DataFrame()
    if steps.empty:
        st.caption("No steps recorded for this session.")
        return
    for r in steps.sort_values("step").itertuples():
        tool = f" · `{r.tool}`" if isinstance(r.tool, str) and r.tool else ""
        head = (f"step {int(r.step)} · {r.role}{tool} · {int(r.tokens_in or 0):,} in / "
                f"{int(r.tokens_out or 0):,} out · {float(r.latency_s or 0):.1f} s")
        with st.expander(head, expanded=False):
            args = _loads(r.arguments_json)
            if args:
                st.json(args)
            st.text(r.result_summary or "")
