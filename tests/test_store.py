"""LineageStore: schema, one-transaction candidate writes, champion, events, totals."""

from __future__ import annotations

import json
import sqlite3

import pytest

from evolve.records import AgentStep, Candidate, Event, Measurement, RunRecord, SessionRecord
from evolve.store import LineageStore, StoreError


def _cand(cid, parent=None, status="ok", score=1.0, session=None, cost=0.0, sha=None):
    return Candidate(id=cid, parent_id=parent, parent2_id=None, operator="offline",
                     commit_sha=f"{cid:040x}", source_sha256=sha or f"src{cid}", status=status,
                     score=score if status == "ok" else None,
                     failure_class=None if status == "ok" else "mismatch",
                     failure_message=None if status == "ok" else "max err 0.5",
                     hypothesis=f"h{cid}", session_id=session, cost_usd=cost,
                     tokens_in=10 if cost else 0, tokens_out=5 if cost else 0)


def _meas(cid, shape="S=64"):
    return Measurement(candidate_id=cid, shape=shape, B=1, Hq=4, Hkv=2, S=64, D=64, causal=True,
                       dtype="float16", ms=1.5, tflops=0.1, baseline_ms=0.5, speedup=0.33,
                       error=1e-3, error_ratio=0.5, baselines_json=json.dumps({"cudnn": 0.5}))


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


def test_candidates_and_measurements_roundtrip(store):
    assert store.next_candidate_id() == 0
    store.add_candidate(_cand(0), [_meas(0, "a"), _meas(0, "b")])
    store.add_candidate(_cand(1, parent=0, status="rejected"), [])
    assert store.next_candidate_id() == 2
    c1 = store.get_candidate(1)
    assert c1.parent_id == 0 and c1.failure_class == "mismatch" and not c1.ok
    assert [c.id for c in store.candidates("ok")] == [0]
    assert [c.id for c in store.candidates()] == [0, 1]
    ms = store.measurements(0)
    assert [m.shape for m in ms] == ["a", "b"] and ms[0].causal is True
    assert ms[0] == _meas(0, "a")
    assert store.has_source("src1") and not store.has_source("nope")
    assert store.get_candidate(9) is None
    counts = store.counts()
    assert counts["total"] == 2 and counts["by_class"] == {"mismatch": 1}


def test_add_candidate_is_one_transaction_and_never_twice(store):
    store.add_candidate(_cand(0), [_meas(0)])
    with pytest.raises(StoreError):
        store.add_candidate(_cand(0), [_meas(0)])
    # a bad measurement aborts the whole write: neither the row nor its measurements land
    with pytest.raises(StoreError):
        store.add_candidate(_cand(1, parent=0), [_meas(1), _meas(7)])
    assert store.get_candidate(1) is None and store.measurements(1) == []
    n = store.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    assert n == 1
    assert store.integrity_ok()


def test_best_follows_new_best_events(store):
    assert store.best() is None
    store.add_candidate(_cand(0, score=1.0), [])
    assert store.best().id == 0  # falls back to the seed
    store.add_candidate(_cand(1, parent=0, score=3.0), [])
    assert store.best().id == 0  # a higher score alone is not a champion
    store.add_event(Event(kind="new_best", candidate_id=1, message="won"))
    store.add_event(Event(kind="rematch", candidate_id=2, message="lost"))
    assert store.best().id == 1
    assert [e.kind for e in store.events()] == ["new_best", "rematch"]
    assert [e.candidate_id for e in store.events("rematch")] == [2]


def test_sessions_steps_and_totals(store):
    store.record_session(SessionRecord(id="s1", parent_id=0, parent2_id=None, operator="agent",
                                       model="m", outcome="submitted", candidate_id=1,
                                       tokens_in=100, tokens_out=40, cost_usd=0.25))
    store.record_session(SessionRecord(id="s2", parent_id=0, parent2_id=None, operator="agent",
                                       model="m", outcome="gave_up", tokens_in=7, tokens_out=3,
                                       cost_usd=0.05))
    store.add_agent_steps([AgentStep(session_id="s1", step=i, role="assistant", tool="t",
                                     arguments_json="{}", result_summary=str(i))
                           for i in (1, 0)])
    # a candidate of session s1 repeats the session's cost: it must not count twice
    store.add_candidate(_cand(1, session="s1", cost=0.25), [])
    store.add_candidate(_cand(2, cost=0.5), [])  # cost outside any session
    assert [s.id for s in store.sessions()] == ["s1", "s2"]
    assert [s.step for s in store.agent_steps("s1")] == [0, 1]
    t = store.totals()
    assert t["tokens_in"] == 117 and t["tokens_out"] == 48
    assert abs(t["cost_usd"] - 0.80) < 1e-9


def test_schema_matches_architecture(store):
    cols = {r[1] for r in store.db.execute("PRAGMA table_info(candidates)").fetchall()}
    assert {"id", "parent_id", "parent2_id", "commit_sha", "source_sha256", "failure_class",
            "changes_json", "result_json", "depth"} <= cols
    for table in ("runs", "candidates", "measurements", "sessions", "agent_steps", "events"):
        assert store.db.table(table).exists()
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
