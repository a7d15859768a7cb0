"""Lineage tree: a tidy layout (x = depth, y = leaf order of the primary-parent tree) drawn
with Altair; solid rules for parent edges, dashed rules for crossover (second-parent) edges,
nodes drawn as in the trajectory (ok, pre-screen, rejected), the champion ringed, and a point selection on the nodes."""

from __future__ import annotations

import altair as alt
import pandas as pd

from dashboard.charts import KIND_COLORS, KIND_SHAPES, tooltip

SELECTION = "node"


def layout(cands: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes with x/y, edges with x/y/x2/y2/kind). Parents missing from the table (a
    half-written run) are treated as roots rather than dropped."""
    ids = [int(i) for i in cands["id"]]
    known = set(ids)
    parent = {int(r.id): (int(r.parent_id) if pd.notna(r.parent_id) and int(r.parent_id) in known else None)
              for r in cands.itertuples()}
    children: dict[int | None, list[int]] = {}
    for cid in sorted(ids):
        children.setdefault(parent[cid], []).append(cid)
    pos: dict[int, tuple[int, float]] = {}
    next_row = 0.0

    def place(root: int) -> None:  # iterative post-order, so deep lineages don't recurse
        nonlocal next_row
        stack: list[tuple[int, int, bool]] = [(root, 0, False)]
        while stack:
            node, depth, done = stack.pop()
            kids = children.get(node, [])
            if done or not kids:
                if kids:
                    y = sum(pos[k][1] for k in kids) / len(kids)
                else:
                    y, next_row = next_row, next_row + 1
                pos[node] = (depth, y)
                continue
            stack.append((node, depth, True))
            stack.extend((k, depth + 1, False) for k in reversed(kids))

    for root in children.get(None, []):
        place(root)
    nodes = cands.copy()
    nodes["x"] = [pos[int(i)][0] for i in nodes["id"]]
    nodes["y"] = [pos[int(i)][1] for i in nodes["id"]]
    edges = []
    for r in nodes.itertuples():
        for pid, kind in ((r.parent_id, "parent"), (r.parent2_id, "crossover")):
            if pd.notna(pid) and int(pid) in pos:
                px, py = pos[int(pid)]
                edges.append({"x": px, "y": py, "x2": r.x, "y2": r.y, "edge": kind,
                              "from": int(pid), "to": int(r.id)})
    return nodes, pd.DataFrame(edges, columns=["x", "y", "x2", "y2", "edge", "from", "to"])


def lineage_chart(cands: pd.DataFrame, best_id: int | None = None) -> alt.LayerChart:
    """The tree of a non-empty candidates frame (data.with_champion's columns)."""
    nodes, edges = layout(cands)
    nodes["label"] = nodes["id"].astype(int).astype(str)
    nodes["best"] = nodes["id"] == best_id
    height = min(900, max(260, 28 * (int(nodes["y"].max()) + 1)))  # 28 px a leaf
    x = alt.X("x:Q", title="depth (generations from the seed)", axis=alt.Axis(tickMinStep=1))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(reverse=True, padding=12))
    dash = alt.StrokeDash("edge:N", title="edge", scale=alt.Scale(domain=["parent", "crossover"],
                                                                  range=[[1, 0], [5, 4]]))
    edge_layer = alt.Chart(edges).mark_rule(color="#999", strokeWidth=1.4).encode(
        x=x, y=y, x2="x2:Q", y2="y2:Q", strokeDash=dash,
        tooltip=[alt.Tooltip("from:Q", title="parent"), alt.Tooltip("to:Q", title="child"),
                 alt.Tooltip("edge:N", title="edge")])
    pick = alt.selection_point(name=SELECTION, fields=["id"], on="click", clear="dblclick")
    big = len(nodes) > 80  # smaller marks and no id labels when the tree gets crowded
    node_layer = alt.Chart(nodes).mark_point(filled=True, size=50 if big else 160).encode(
        x=x, y=y, color=alt.Color("kind:N", scale=KIND_COLORS, title="candidate"),
        shape=alt.Shape("kind:N", scale=KIND_SHAPES, title="candidate"),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55)), tooltip=tooltip(),
    ).add_params(pick)
    ring = alt.Chart(nodes[nodes["best"]]).mark_point(size=420, filled=False, color="black", strokeWidth=2.5).encode(
        x=x, y=y, tooltip=[alt.Tooltip("id:Q", title="champion")])
    # the id sits just right of its own node, vertically centred on it
    labels = alt.Chart(nodes).mark_text(align="left", baseline="middle", dx=9, fontSize=10, color="#333").encode(
        x=x, y=y, text="label:N")
    layers = [edge_layer, ring, node_layer] + ([] if big else [labels])
    return alt.layer(*layers).properties(height=height, title="Lineage tree")


def selected_id(state: object) -> int | None:
    """The candidate id picked in the chart, from st.altair_chart's selection state."""
    try:
        return int(state["selection"][SELECTION][0]["id"])  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return None  # nothing picked (or the selection was cleared)
