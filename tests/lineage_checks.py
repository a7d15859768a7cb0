"""Consistency checks of a run directory shared by the loop and resume tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from evolve.run import RunHandle


def assert_consistent(run_dir: Path) -> RunHandle:
    """DB <-> git agree edge for edge; no duplicate or half-written candidate."""
    conn = sqlite3.connect(Path(run_dir) / "lineage.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    run = RunHandle.open(Path(run_dir))
    store, repo = run.store, run.repo
    cands = store.candidates()
    ids = [c.id for c in cands]
    assert ids == list(range(len(ids))), f"ids not contiguous: {ids}"
    refs = repo.candidate_refs()
    assert set(refs) == set(ids), f"refs {sorted(refs)} != DB ids {ids}"
    assert len({c.source_sha256 for c in cands}) == len(cands), "a source was evaluated twice"
    by_id = {c.id: c for c in cands}
    for c in cands:
        assert refs[c.id] == c.commit_sha
        expected = [by_id[p].commit_sha for p in (c.parent_id, c.parent2_id) if p is not None]
        assert repo.parents_of(c.id) == expected, f"git parents of #{c.id} differ from lineage"
        if c.parent_id is None:
            assert c.id == 0 and c.operator == "seed" and c.depth == 0
        else:
            assert c.parent_id < c.id and c.depth == by_id[c.parent_id].depth + 1
        assert c.status in ("ok", "rejected")
        if c.ok:
            assert c.score is not None and c.score > 0 and c.evaluation.shapes
        else:
            assert c.failure_class and c.score is None
        assert c.result["status"] == c.status
        assert (run.paths.logs / f"{c.id}.log").is_file()
    best = store.best()
    if best is not None:
        assert repo.best_sha() == best.commit_sha
        ok_scores = [c.score for c in cands if c.ok]
        # without a GPU the champion is the highest-score correct candidate
        if not run.config.gpu:
            assert best.score == max(ok_scores)
    leftovers = [p.name for p in run.paths.scratch.iterdir()] if run.paths.scratch.exists() else []
    assert leftovers == [], f"scratch not cleaned: {leftovers}"
    return run
