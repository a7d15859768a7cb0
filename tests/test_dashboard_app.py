"""Dashboard tests with streamlit.testing.AppTest over a run fixture, plus the read-only
run reader (evolve/read.py) and the `evolve dashboard` command line."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from streamlit.testing.v1 import AppTest

from dashboard_fixture import QUICK, fixture_run_dir, hold_lock, make_synthetic_run
from evolve import read

APP_FILE = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory) -> Path:
    """A run directory: the real loop's fixture when it exists, else the synthetic one."""
    return fixture_run_dir(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def synthetic_runs(tmp_path_factory) -> Path:
    """Two synthetic runs (one live with FlexAttention timings) with agent sessions."""
    root = tmp_path_factory.mktemp("synth")
    make_synthetic_run(root, name="cpu-run")
    gpu = make_synthetic_run(root, name="gpu-run", flex=True, status="running")
    hold_lock(gpu, os.getpid())  # this test process holds the run: it is live
    return root


def db_numbers(run_dir: Path) -> dict:
    """The fixture's numbers straight from SQLite (independent of evolve.read). The best is the
    champion: the candidate of the latest `new_best` event (the seed before any), NOT the
    highest single score, which may have lost its rematch."""
    con = sqlite3.connect(f"file:{run_dir / 'lineage.db'}?mode=ro", uri=True)
    try:
        best = con.execute("SELECT c.id, c.score FROM candidates c WHERE c.id = coalesce((SELECT candidate_id "
                           "FROM events WHERE kind='new_best' ORDER BY rowid DESC LIMIT 1), 0)").fetchone()
        seed = con.execute("SELECT score FROM candidates WHERE id=0").fetchone()
        n = con.execute("SELECT count(*) FROM candidates").fetchone()[0]
        rejected = con.execute("SELECT count(*) FROM candidates WHERE status='rejected'").fetchone()[0]
        status = con.execute("SELECT status FROM runs").fetchone()[0]
    finally:
        con.close()
    return {"best_id": best[0], "best": best[1], "seed": seed[0], "n": n, "rejected": rejected,
            "status": status}


def app(runs_dir: Path, monkeypatch, **query: str) -> AppTest:
    monkeypatch.setenv("EVOLVE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(APP_FILE, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.info] + [e.value for e in at.warning] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ---- every view over the fixture run --------------------------------------------------

def test_overview_shows_fixture_numbers(fixture_run, monkeypatch):
    nums = db_numbers(fixture_run)
    at = app(fixture_run.parent, monkeypatch, run=fixture_run.name)
    m = metrics(at)
    assert m[f"best: champion #{nums['best_id']}"] == f"{nums['best']:.4g}"
    assert m["rejected"] == str(nums["rejected"])
    assert m["seed score"] == f"{nums['seed']:.4g}"
    assert m["candidates"] == str(nums["n"])
    assert m["status"] == nums["status"]
    assert at.header[0].value.startswith(fixture_run.name)
    assert [s.value for s in at.subheader] == ["Trajectory", "Lineage tree"]
    # CPU run: no FlexAttention timing, said in words rather than drawn
    assert "FlexAttention was not timed in this run" in texts(at)


def test_candidate_view_source_diff_and_shapes(fixture_run, monkeypatch):
    nums = db_numbers(fixture_run)
    at = app(fixture_run.parent, monkeypatch, run=fixture_run.name, view="candidate")
    assert at.sidebar.radio(key="view").value == "Candidate"
    assert at.subheader[0].value == f"Candidate {nums['best_id']}"  # opens on the best
    assert metrics(at)["score"] == f"{nums['best']:.4g}"
    src = at.code[0].value
    assert "def attention" in src
    assert src.rstrip() == read.candidate_source(fixture_run, None, nums["best_id"]).rstrip()
    con = sqlite3.connect(f"file:{fixture_run / 'lineage.db'}?mode=ro", uri=True)
    result = con.execute("SELECT result_json FROM candidates WHERE id=?", (nums["best_id"],)).fetchone()[0]
    ms = [sh["ms"] for sh in json.loads(result)["shapes"]]
    child, parent = con.execute("SELECT id, parent_id FROM candidates WHERE parent_id IS NOT NULL "
                                "ORDER BY id DESC LIMIT 1").fetchone()
    con.close()
    table = at.dataframe[0].value
    assert list(table["ms"]) == pytest.approx(ms)
    # a child: its diff against the parent, as git has them
    at.selectbox(key="candidate").set_value(child).run()
    assert not at.exception
    diff = at.code[1]
    assert diff.language == "diff"
    assert diff.value.startswith(f"--- candidate {parent}/kernel.py\n+++ candidate {child}/kernel.py")
    # the seed has no parent to diff against
    at.selectbox(key="candidate").set_value(0).run()
    assert not at.exception
    assert "The seed has no parent." in texts(at)


def test_failures_and_cost_view(fixture_run, monkeypatch):
    nums = db_numbers(fixture_run)
    at = app(fixture_run.parent, monkeypatch, run=fixture_run.name, view="failures")
    assert "Failures" in [s.value for s in at.subheader]
    if nums["rejected"]:
        counts = at.dataframe[0].value
        assert int(counts["count"].sum()) == nums["rejected"]
    else:
        assert "No rejected candidates in this run." in [s.value for s in at.success]


def test_runs_view_table_and_compare(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, view="runs")
    table = at.dataframe[0].value
    assert list(table["run"]) == ["cpu-run", "gpu-run"]
    assert list(table["GPU"]) == ["none (CPU)", "NVIDIA H100 80GB HBM3"]
    assert list(table["candidates"]) == [8, 8]
    assert list(table["champion"]) == [3, 3]
    assert at.multiselect(key="compare").value == ["cpu-run", "gpu-run"]
    assert [m.value for m in at.markdown if m.value.startswith("####")] == ["#### cpu-run", "#### gpu-run"]


# ---- synthetic run: agent transcript, FlexAttention, lineage selection, URL -------------

def test_transcript_of_an_agent_candidate(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, run="cpu-run", view="candidate", candidate="5")
    assert at.subheader[0].value == "Candidate 5"
    assert "compile" in at.error[0].value and "dot shape" in at.error[0].value
    body = texts(at)
    assert "session `s5`" in body and "6,000 in / 1,500 out tokens" in body and "$0.0100" in body
    labels = [e.label for e in at.expander]
    assert any(lbl.startswith("step 1 · tool · `read_kernel` · 2,000 in / 500 out") for lbl in labels)
    assert any("`evaluate`" in lbl for lbl in labels)
    assert at.query_params["candidate"] == ["5"] or at.query_params["candidate"] == "5"


def test_flex_reference_is_measured_not_invented(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, run="gpu-run")
    # fixture: flex_ms = 1.25 * cudnn_ms on every shape -> ratio 0.8 over the 6 timed evaluations
    assert "FlexAttention = 0.800 x baseline (median of 6 evaluations in this run)" in texts(at)
    assert at.sidebar.radio(key="view").value == "Overview"
    assert "● live: watching for new candidates" in [c.value for c in at.sidebar.caption]
    assert metrics(at)["status"] == "running"


def test_failures_and_spend_of_an_agent_run(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, run="cpu-run", view="failures")
    counts = at.dataframe[0].value
    assert dict(zip(counts["failure_class"], counts["count"])) == {"compile": 1, "mismatch": 1, "slow": 1}
    assert "**15,000** tokens, **$0.0200** over 3 sessions" in texts(at)
    assert list(at.dataframe[2].value["id"]) == ["s2", "s3", "s5"]
    at.radio(key="fail_x").set_value("time").run()
    assert not at.exception


def test_lineage_fallback_select_opens_candidate(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, run="cpu-run")
    at.selectbox(key="tree_pick").set_value(4).run()
    assert not at.exception
    assert at.sidebar.radio(key="view").value == "Candidate"
    assert at.subheader[0].value == "Candidate 4"
    buttons = [b.label for b in at.button]
    assert buttons == ["open parent #3", "open parent #1"]  # crossover: two parents
    at.button(key="open_parent_0").click().run()
    assert at.subheader[0].value == "Candidate 3"


def test_tree_layout_and_selection_state(synthetic_runs):
    from dashboard import tree
    from dashboard.data import load_run

    data = load_run(synthetic_runs / "cpu-run")
    nodes, edges = tree.layout(data.candidates)
    depth = dict(zip(nodes["id"], nodes["x"]))
    assert depth == {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 3, 6: 3, 7: 3}
    assert set(map(tuple, edges[edges["edge"] == "crossover"][["from", "to"]].values)) == {(1, 4)}
    assert len(edges) == 8  # 7 parent edges + 1 crossover
    assert tree.selected_id({"selection": {tree.SELECTION: [{"id": 3}]}}) == 3
    assert tree.selected_id({"selection": {tree.SELECTION: []}}) is None
    spec = tree.lineage_chart(data.candidates, data.summary.best_id).to_dict()
    params = spec.get("params", []) + [p for layer in spec["layer"] for p in layer.get("params", [])]
    assert [p["select"]["type"] for p in params if p["name"] == tree.SELECTION] == ["point"]


# ---- the truth: champion, liveness, run identity, every measured score (issue 18) ------

def test_champion_is_best_and_the_highest_score_is_labelled(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, run="cpu-run")
    assert metrics(at)["best: champion #3"] == "0.0633"
    assert not any("#7" in label for label in metrics(at))
    assert "highest single score: #7 0.0701 (lost its rematch)" in texts(at)
    at = app(synthetic_runs, monkeypatch, run="cpu-run", view="candidate")
    assert at.subheader[0].value == "Candidate 3"  # opens on the champion


def test_running_db_without_a_live_lock_is_interrupted(tmp_path, monkeypatch):
    make_synthetic_run(tmp_path, name="dead", status="running")
    at = app(tmp_path, monkeypatch)
    assert metrics(at)["status"] == "interrupted"
    assert "last activity 2026-11-26 04:20:00 UTC" in texts(at)  # the worker snapshot's time
    assert not any("● live" in c.value for c in at.sidebar.caption)
    assert read.summarize(read.read_snapshot(tmp_path / "dead")).elapsed_s == 4800.0  # not "forever"


def test_runs_are_folders_even_with_one_stored_name(tmp_path, monkeypatch):
    make_synthetic_run(tmp_path, name="a-first", stored_name="gqa", n=3)
    make_synthetic_run(tmp_path, name="b-second", stored_name="gqa", n=6)
    at = app(tmp_path, monkeypatch, view="runs")
    table = at.dataframe[0].value
    assert list(table["run"]) == ["a-first", "b-second"] and list(table["stored name"]) == ["gqa", "gqa"]
    at = app(tmp_path, monkeypatch, run="b-second")
    assert at.header[0].value == "b-second (gqa)" and metrics(at)["candidates"] == "6"
    at.sidebar.selectbox(key="run").set_value("a-first").run()
    assert at.header[0].value == "a-first (gqa)" and metrics(at)["candidates"] == "3"


def test_trajectory_plots_prescreen_scores_autoscaled_with_rematches(synthetic_runs):
    from dashboard import charts
    from dashboard.data import load_run

    data = load_run(synthetic_runs / "cpu-run")
    spec = charts.trajectory_chart(data).to_dict()
    datasets = spec["datasets"].values()
    measured = {r["id"]: (r["measured"], r["kind"]) for rows in datasets for r in rows
                if r.get("measured") is not None and "kind" in r}
    assert measured[6] == (pytest.approx(QUICK), "pre-screen (quick shapes)")  # the `slow` one, not at 0
    assert measured[7] == (0.0701, "ok") and 2 not in measured and 5 not in measured
    strip = charts.unscored_chart(data).to_dict()  # rejected without a score: a strip below
    assert sorted(r["id"] for rows in strip["datasets"].values() for r in rows) == [2, 5]
    main = spec["layer"]
    assert main[1]["encoding"]["y"]["scale"] == {"zero": False}
    rematch = [r for rows in datasets for r in rows if "rematch" in r]
    assert {(r["challenger"], r["rematch"]) for r in rematch} == {
        (1, "won its rematch"), (3, "won its rematch"), (7, "lost its rematch")}
    assert list(data.candidates["champion"]) == [0, 1, 1, 3, 3, 3, 3, 3]


def test_browser_back_returns_to_the_view_in_the_url(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, run="cpu-run")
    at.selectbox(key="tree_pick").set_value(4).run()  # as a click on node 4
    assert at.query_params["view"] in ("candidate", ["candidate"])
    at.query_params["view"] = "overview"  # what the browser's Back sends (popstate -> rerun)
    at.query_params.pop("candidate", None)
    at.run()
    assert at.sidebar.radio(key="view").value == "Overview"
    assert [sub.value for sub in at.subheader] == ["Trajectory", "Lineage tree"]


def test_new_views_compare_shapes_activity(synthetic_runs, monkeypatch):
    at = app(synthetic_runs, monkeypatch, run="gpu-run", view="compare")
    assert (at.selectbox(key="cmp_a").value, at.selectbox(key="cmp_b").value) == (3, 7)
    both = at.dataframe[2].value
    assert list(both["short"]) == ["16x32/8 d128 1k", "16x32/8 d128 1k c"]
    assert list(both["B / A"]) == pytest.approx([0.0701 / 0.0633] * 2)
    assert at.code[0].language == "diff" and '+CONFIG = {"BLOCK_M": 64' in at.code[0].value
    at = app(synthetic_runs, monkeypatch, run="gpu-run", view="shapes")
    assert at.radio(key="heat_suite").options == ["quick", "smoke"]
    at = app(synthetic_runs, monkeypatch, run="gpu-run", view="activity")
    subs = [sub.value for sub in at.subheader]
    assert subs == ["Evaluation workers", "Throughput and evaluation time", "Rematches", "Starts, stops and warnings"]
    rematches = at.dataframe[1].value
    assert list(zip(rematches["challenger"], rematches["result"])) == [(1, "won"), (3, "won"), (7, "lost")]
    assert at.dataframe[0].value["busy %"].iloc[0] == pytest.approx(83.3)
    assert at.dataframe[0].value["gpu_idle_s"].iloc[0] == pytest.approx(450.0)  # GPU gate free


# ---- empty, missing and half-written run directories -----------------------------------

def test_missing_and_empty_runs_dir(tmp_path, monkeypatch):
    at = app(tmp_path / "nope", monkeypatch)
    assert "does not exist yet" in at.warning[0].value
    at = app(tmp_path, monkeypatch)
    assert "No runs in" in at.info[0].value


@pytest.mark.parametrize("stage", ["toml-only", "empty-db", "no-tables", "no-run-row", "no-candidates"])
def test_half_written_run_shows_a_message(tmp_path, monkeypatch, stage):
    run = tmp_path / "half"
    run.mkdir()
    (run / "run.toml").write_text('name = "half"\n')
    if stage == "empty-db":
        (run / "lineage.db").write_bytes(b"")
    elif stage != "toml-only":
        db = sqlite_utils.Database(run / "lineage.db")
        db.enable_wal()
        if stage == "no-tables":
            db["other"].insert({"x": 1})
        else:
            db["runs"].create({"name": str, "status": str, "created_at": str}, pk="name")
            db["candidates"].create({"id": int, "status": str, "score": float}, pk="id")
            if stage == "no-candidates":
                db["runs"].insert({"name": "half", "status": "running", "created_at": "2026-11-26T00:00:00+00:00"})
        db.conn.close()
    at = app(tmp_path, monkeypatch)
    if stage == "no-candidates":
        assert "No candidates recorded yet." in [i.value for i in at.info]
    else:
        assert at.warning and "cannot be shown yet" in at.warning[0].value
        assert "starting" in at.warning[0].value or "not a run directory" in at.warning[0].value


# ---- evolve.read -----------------------------------------------------------------------

def test_reader_is_read_only_and_sees_a_consistent_snapshot(tmp_path):
    run = make_synthetic_run(tmp_path, n=3)
    writer = sqlite3.connect(run / "lineage.db")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO events (ts, kind, message, candidate_id, data_json) "
                   "VALUES ('2026-11-26T09:00:00+00:00', 'warning', 'uncommitted', NULL, '{}')")
    snap = read.read_snapshot(run)  # a writer holding its lock does not block a WAL reader
    assert [c["id"] for c in snap.candidates] == [0, 1, 2]
    assert all(e["message"] != "uncommitted" for e in snap.events)
    writer.commit()
    writer.close()
    assert any(e["message"] == "uncommitted" for e in read.read_snapshot(run).events)
    conn = read.connect(run)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM candidates")
    conn.close()


def test_reader_summary_and_diff(tmp_path):
    run = make_synthetic_run(tmp_path)
    s = read.summarize(read.read_snapshot(run))
    assert (s.candidates, s.rejected, s.best_id, s.best_score, s.seed_score) == (8, 3, 3, 0.0633, 0.0421)
    assert (s.top_id, s.top_score) == (7, 0.0701)  # the highest single score lost its rematch
    assert s.elapsed_s == 4800.0 and s.cost_usd == pytest.approx(0.02)
    from dashboard.data import load_run, source_diff

    diff = source_diff(load_run(run), 3, 4)  # candidate 4 against its parent
    assert '-CONFIG = {"BLOCK_M": 128' in diff and '+CONFIG = {"BLOCK_M": 96' in diff
    with pytest.raises(read.RunNotReady, match="no lineage.db"):
        read.read_snapshot(tmp_path)
    assert read.list_runs(tmp_path / "missing") == []


# ---- evolve dashboard -------------------------------------------------------------------

def test_app_reads_runs_dir_from_args_then_env():
    from dashboard.settings import ENV_RUNS, runs_dir_from_args

    assert runs_dir_from_args(["--runs", "/a"], {ENV_RUNS: "/b"}) == Path("/a")
    assert runs_dir_from_args(["--server.port", "1"], {ENV_RUNS: "/b"}) == Path("/b")
    assert runs_dir_from_args([], {}) == Path("runs")
