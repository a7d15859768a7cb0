"""The candidate view (numbers, hypothesis, failure, per-shape table, source, diff against the
parent, the agent transcript of its session) and the two-candidate comparison."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import data as dd
from dashboard.views_run import CANDIDATE_KEY, candidate_labels, open_candidate
from evolve.read import RunNotReady, json_dict, measured_score, result_of

SHAPE_COLUMNS = ["short", "ms", "baseline_ms", "speedup", "tflops", "error", "error_ratio"]
NUMBER = st.column_config.NumberColumn
SHAPE_CONFIG = {"short": st.column_config.TextColumn("shape", help="B x Hq/Hkv, head dim, sequence length, "
                                                     "c = causal"),
                "ms": NUMBER("ms", format="%.4f"), "baseline_ms": NUMBER("baseline ms", format="%.4f"),
                "tflops": NUMBER("TFLOP/s", format="%.1f"), "speedup": NUMBER("speedup", format="%.3f"),
                "error": NUMBER("max error", format="%.2e"), "error_ratio": NUMBER("error ratio", format="%.2f")}


def view(data: dd.RunData) -> None:
    labels = candidate_labels(data.candidates)
    if st.session_state.get(CANDIDATE_KEY) not in labels:  # the champion, else the seed
        best = data.summary.best_id
        st.session_state[CANDIDATE_KEY] = best if best in labels else next(iter(labels))
    cid = st.selectbox("candidate", list(labels), format_func=labels.get, key=CANDIDATE_KEY)
    c: dict[str, Any] = data.snapshot.candidate(int(cid))
    st.subheader(f"Candidate {cid}")
    cols = st.columns(5)
    cols[0].metric("status", c["status"])
    score, pre = measured_score(c)
    cols[1].metric("pre-screen score" if pre else "score", dd.fmt_score(score))
    cols[2].metric("operator", c.get("operator") or "–")
    cols[3].metric("depth", c.get("depth", 0))
    cols[4].metric("eval time", f"{float(c.get('eval_seconds') or 0):.1f} s")
    parents = [p for p in (c.get("parent_id"), c.get("parent2_id")) if p is not None]
    if parents:
        pcols = st.columns(len(parents) + 2)
        for i, p in enumerate(parents):
            pcols[i].button(f"open parent #{int(p)}", key=f"open_parent_{i}", on_click=open_candidate, args=(int(p),))
    st.markdown(f"**Hypothesis.** {c.get('hypothesis') or '–'}")
    if c["status"] != "ok":
        st.error(f"**{c.get('failure_class') or 'rejected'}**: {c.get('failure_message') or '(no message)'}")
    changes = json_dict(c.get("changes_json"))
    agent = changes.get("agent")
    if isinstance(agent, dict) and agent.get("unsubmitted"):
        st.warning(f"**unsubmitted**: the agent never called submit; the session's best state "
                   f"that evaluated ok was kept ({agent['unsubmitted']})")
    if changes:
        with st.expander("changes (operator's record)"):
            st.json(changes)
    st.markdown(f"commit `{c.get('commit_sha') or '–'}` · created {c.get('created_at')} · "
                f"variation {float(c.get('variation_seconds') or 0):.1f} s")
    shapes(data, int(cid))
    code(data, int(cid))
    transcript(data, c)


def full(table: pd.DataFrame) -> int:
    """A dataframe height showing every row (no inner scrolling)."""
    return 35 * (len(table) + 1) + 3


def shape_table(data: dd.RunData, cid: int) -> pd.DataFrame:
    m = data.shapes
    return m[m["candidate_id"] == cid][SHAPE_COLUMNS] if not m.empty else pd.DataFrame(columns=SHAPE_COLUMNS)


def shapes(data: dd.RunData, cid: int) -> None:
    st.markdown("#### Per-shape results")
    table = shape_table(data, cid)
    if table.empty:
        st.caption("No per-shape results (a candidate rejected before timing has none).")
        return
    st.dataframe(table, hide_index=True, width="stretch", column_config=SHAPE_CONFIG, height=full(table))
    result = result_of(data.snapshot.candidate(cid))
    if result.get("timing"):
        st.caption(f"suite {result.get('suite')} · timing: {result['timing']} · primary baseline: "
                   f"{result.get('primary_baseline')}")


def compare(data: dd.RunData) -> None:
    """Two candidates side by side: per-shape tables and the source diff between them."""
    labels = candidate_labels(data.candidates)
    ids = list(labels)
    cols = st.columns(2)
    left = cols[0].selectbox("candidate A", ids, format_func=labels.get, key="cmp_a",
                             index=ids.index(data.summary.best_id) if data.summary.best_id in ids else 0)
    right = cols[1].selectbox("candidate B", ids, format_func=labels.get, key="cmp_b", index=len(ids) - 1)
    a, b = shape_table(data, left), shape_table(data, right)
    for col, cid, table in ((cols[0], left, a), (cols[1], right, b)):
        score, pre = measured_score(data.snapshot.candidate(cid))
        col.metric(f"#{cid} " + ("pre-screen score" if pre else "score"), dd.fmt_score(score))
        side = table[["short", "ms", "speedup", "tflops"]]  # what fits half the page
        col.dataframe(side, hide_index=True, width="stretch", column_config=SHAPE_CONFIG, height=full(side)) \
            if not table.empty else col.caption("no per-shape results")
    if not a.empty and not b.empty:
        both = a[["short", "speedup"]].merge(b[["short", "speedup"]], on="short", suffixes=(" A", " B"))
        both["B / A"] = both["speedup B"] / both["speedup A"]
        st.markdown("#### Per shape, B against A")
        st.dataframe(both, hide_index=True, width="stretch", height=full(both), column_config={
            "short": "shape", **{k: NUMBER(k, format="%.3f") for k in ("speedup A", "speedup B", "B / A")}})
    st.markdown("#### Source diff A -> B")
    try:
        diff = dd.source_diff(data, left, right)
    except RunNotReady as e:
        st.warning(str(e))
        return
    st.code(diff, language="diff") if diff else st.caption("The two sources are identical.")


def code(data: dd.RunData, cid: int) -> None:
    src_tab, diff_tab = st.tabs(["source", "diff against parent"])
    try:
        src = dd.candidate_source(data, cid)
        parent = data.snapshot.candidate(cid).get("parent_id")
        diff = None if parent is None else dd.source_diff(data, int(parent), cid)
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
            args = json_dict(r.arguments_json)
            if args:
                st.json(args)
            st.text(r.result_summary or "")
