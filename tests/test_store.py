"""LineageStore: schema, one-transaction candidate writes, champion, events, totals."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from evaluator import EvalResult
from evolve.records import AgentStep, Candidate, Event, RunRecord, SessionRecord
from evolve.store import LineageStore, StoreError


def _cand(cid, parent=None, status="ok", score=1.0, session=None, cost=0.0, sha=None):
    return Candidate(id=cid, parent_id=parent, parent2_id=None, operator="offline",
                     commit_sha=f"{cid:040x}", source_sha256=sha or f"src{cid}", status=status,
                     score=score if status == "ok" else None,
                     failure_class=None if status == "ok" else "mismatch",
                     failure_message=None if status == "ok" else "max err 0.5",
                     hypothesis=f"h{cid}", session_id=session, cost_usd=cost,
                     tokens_in=10 if cost else 0, tokens_out=5 if cost else 0)


def _evaluated(cid, shapes=("a", "b")):
    """An ok candidate with a real EvalResult (two shapes) as its evaluation."""
    res = EvalResult.from_dict({
        "status": "ok", "target": "gqa", "suite": "smoke", "score": 0.33, "device": "interpreter",
        "shapes": [{"name": n, "B": 1, "Hq": 4, "Hkv": 2, "S": 64, "D": 64, "causal": True,
                    "dtype": "float16", "ms": 1.5, "baseline_ms": 0.5, "speedup": 0.33,
                    "baselines": {"cudnn": 0.5}} for n in shapes]})
    return Candidate.proposed(None, "x = 0\n", "h", {"k": 1}, "seed").committed(cid, 0, "f" * 40) \
        .with_result(res)


@pytest.fixture
def store(tmp_path):
    s = LineageStore.create(tmp_path / "lineage.db",
                            RunRecord(name="r", target="gqa", operator="offline", model="",
                                      suite="smoke", status="running"))
    yield s
    s.close()


def test_create_open_and_wal(tmp_path, store):
    assert store.run().name == "r" and store.run().status == "running"
    mode = store.db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with pytest.raises(StoreError):
        LineageStore.create(tmp_path / "lineage.db", store.run())
    again = LineageStore.open(tmp_path / "lineage.db")
    assert again.run().target == "gqa"
    with pytest.raises(StoreError):
        LineageStore.open(tmp_path / "missing.db")
    store.set_run_status("stopped")
    assert again.run().status == "stopped"
    with pytest.raises(StoreError):
        store.set_run_status("bogus")


def test_candidates_roundtrip_with_their_evaluation(store):
    assert store.next_candidate_id() == 0
    store.add_candidate(_evaluated(0))
    store.add_candidate(_cand(1, parent=0, status="rejected"))
    assert store.next_candidate_id() == 2
    c1 = store.get_candidate(1)
    assert c1.parent_id == 0 and c1.failure_class == "mismatch" and not c1.ok
    assert [c.id for c in store.candidates("ok")] == [0]
    assert [c.id for c in store.candidates()] == [0, 1]
    c0 = store.get_candidate(0)
    assert c0 == dataclasses.replace(_evaluated(0), source="")  # git keeps the source
    assert c0.score == 0.33 and c0.changes == {"k": 1} and c0.suite == "smoke"
    shapes = c0.evaluation.shapes  # per-shape numbers: stored once, in result_json
    assert [m.name for m in shapes] == ["a", "b"] and shapes[0].causal is True
    assert shapes[0].baselines == {"cudnn": 0.5}
    assert c0.source_sha256 == _evaluated(0).source_sha256
    assert store.has_source(c0.source_sha256) and not store.has_source("nope")
    assert store.get_candidate(9) is None
    counts = store.counts()
    assert counts["total"] == 2 and counts["by_class"] == {"mismatch": 1}


def test_add_candidate_never_twice_and_only_evaluated(store):
    store.add_candidate(_evaluated(0))
    with pytest.raises(StoreError, match="already recorded"):
        store.add_candidate(_evaluated(0))
    pending = Candidate.proposed(0, "y = 1\n", "h", {}, "offline").committed(1, 1)
    with pytest.raises(StoreError, match="not evaluated"):
        store.add_candidate(pending)
    assert store.get_candidate(1) is None
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_run_made_with_a_measurements_table_still_opens(tmp_path, store):
    store.add_candidate(_evaluated(0))
    store.db.execute("CREATE TABLE measurements (candidate_id INTEGER, shape TEXT)")
    store.db.conn.commit()
    old = LineageStore.open(store.path)
    assert old.get_candidate(0).evaluation.shapes[0].name == "a"
    old.close()


def test_best_follows_new_best_events(store):
    assert store.best() is None
    store.add_candidate(_cand(0, score=1.0))
    assert store.best().id == 0  # falls back to the seed
    store.add_candidate(_cand(1, parent=0, score=3.0))
    assert store.best().id == 0  # a higher score alone is not a champion
    store.add_event(Event(kind="new_best", candidate_id=1, message="won"))
    store.add_event(Event(kind="rematch", candidate_id=2, message="lost"))
    assert store.best().id == 1
    assert [e.kind for e in store.events()] == ["new_best", "rematch"]
    assert [e.candidate_id for e in store.events("rematch")] == [2]


def test_sessions_steps_and_totals(store):
    steps = [AgentStep(session_id="s1", step=i, role="assistant", tool="t",
                       arguments_json="{}", result_summary=str(i)) for i in (1, 0)]
    store.record_session(SessionRecord(id="s1", parent_id=0, parent2_id=None, operator="agent",
                                       model="m", outcome="submitted", candidate_id=1,
                                       tokens_in=100, tokens_out=40, cost_usd=0.25), steps)
    store.record_session(SessionRecord(id="s2", parent_id=0, parent2_id=None, operator="agent",
                                       model="m", outcome="gave_up", tokens_in=7, tokens_out=3,
                                       cost_usd=0.05))
    # a candidate of session s1 repeats the session's cost: it must not count twice
    store.add_candidate(_cand(1, session="s1", cost=0.25))
    store.add_candidate(_cand(2, cost=0.5))  # cost outside any session
    assert [s.id for s in store.sessions()] == ["s1", "s2"]
    assert [s.step for s in store.agent_steps("s1")] == [0, 1]
    t = store.totals()
    assert t["tokens_in"] == 117 and t["tokens_out"] == 48
    assert abs(t["cost_usd"] - 0.80) < 1e-9


def test_schema_matches_architecture(store):
    cols = {r[1] for r in store.db.execute("PRAGMA table_info(candidates)").fetchall()}
    assert {"id", "parent_id", "parent2_id", "commit_sha", "source_sha256", "failure_class",
            "changes_json", "result_json", "depth"} <= cols
    for table in ("runs", "candidates", "sessions", "agent_steps", "events"):
        assert store.db.table(table).exists()
    assert not store.db.table("measurements").exists()  # per-shape numbers: in result_json
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
