"""Throughput and progress of one run directory, from its lineage.db (standard library only).

    python benchmarks/gpu/run_stats.py RUN_DIR [--json OUT.json]

Prints candidates recorded (ok / rejected by class), the span between the first and the
last record after the seed, evaluations per minute over that span, the seed's score, the
best score (refs/heads/best's candidate, i.e. after rematches) and their ratio, and the
workers table when the run has one.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import datetime
from pathlib import Path


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def stats(run_dir: Path) -> dict:
    db = sqlite3.connect(run_dir / "lineage.db")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT id, status, score, failure_class, created_at, "
                                        "eval_seconds FROM candidates ORDER BY created_at")]
    seed = next((r for r in rows if r["id"] == 0), None)
    after = [r for r in rows if r["id"] != 0]
    span_min = None
    if seed and after:
        span_min = (_ts(after[-1]["created_at"]) - _ts(seed["created_at"])).total_seconds() / 60
    best_ev = db.execute("SELECT candidate_id FROM events WHERE kind='new_best' "
                         "ORDER BY rowid DESC LIMIT 1").fetchone()
    best = next((r for r in rows if best_ev and r["id"] == best_ev[0]), None)
    by_class: dict[str, int] = {}
    for r in rows:
        if r["status"] != "ok":
            by_class[r["failure_class"]] = by_class.get(r["failure_class"], 0) + 1
    tables = {t[0] for t in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    workers = [dict(r) for r in db.execute("SELECT * FROM workers")] if "workers" in tables else []
    out = {
        "run": run_dir.name, "candidates": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
        "rejected_by_class": by_class, "minutes_after_seed": span_min,
        "evals_per_min": len(after) / span_min if span_min else None,
        "mean_eval_s": (sum(r["eval_seconds"] or 0 for r in after) / len(after)) if after else None,
        "seed_score": seed["score"] if seed else None,
        "best_id": best["id"] if best else None, "best_score": best["score"] if best else None,
        "rematches": db.execute("SELECT COUNT(*) FROM events WHERE kind='rematch'").fetchone()[0],
        "workers": workers,
    }
    if out["seed_score"] and out["best_score"]:
        out["best_over_seed"] = out["best_score"] / out["seed_score"]
    return out


def main() -> None:
    d = stats(Path(sys.argv[1]))
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(d, indent=1))
    print(json.dumps({k: v for k, v in d.items() if k != "workers"}, indent=1))
    for w in d["workers"]:
        print("worker", json.dumps(w))


if __name__ == "__main__":
    main()
