"""Throughput and progress of one run directory, from its lineage.db (standard library only).

    python benchmarks/gpu/run_stats.py RUN_DIR [--json OUT.json]
    python benchmarks/gpu/run_stats.py --compare RUN_DIR RUN_DIR   # e.g. overlap on / off

Prints candidates recorded (ok / rejected by class), the span between the first and the
last record after the seed, evaluations per minute over that span, the seed's score, the
best score (refs/heads/best's candidate, i.e. after rematches) and their ratio, and the
workers table when the run has one, with the GPU figures of issue #19: per worker its
wall seconds (live: GPU gate held + free), timing share (gate held / wall), jobs per
minute; for the run, candidates (after the seed) per GPU-minute (the workers' wall).
`--compare` prints those figures for two runs side by side and their ratio.
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
    out["candidates_after_seed"] = len(after)
    out.update(gpu_figures(workers, len(after)))
    return out


def _f(w: dict, key: str) -> float:
    return float(w.get(key) or 0.0)


def gpu_figures(workers: list[dict], candidates: int) -> dict:
    """Per worker: wall_s (gate held + free; before the gate existed: busy + idle), the
    timing share and jobs per minute; the run's candidates per GPU-minute."""
    per = []
    for w in workers:
        timing = _f(w, "timing_s")
        wall = timing + _f(w, "gpu_idle_s") if "gpu_idle_s" in w else _f(w, "busy_s") + _f(w, "idle_s")
        per.append({"name": w.get("name"), "gpu": w.get("gpu"), "wall_s": wall, "timing_s": timing,
                    "compile_s": _f(w, "compile_s"), "gpu_idle_s": _f(w, "gpu_idle_s"),
                    "timing_share": timing / wall if wall else None,
                    "jobs_per_min": _f(w, "jobs_done") / (wall / 60) if wall else None})
    gpu_min = sum(p["wall_s"] for p in per) / 60
    return {"per_worker": per, "gpu_minutes": gpu_min,
            "candidates_per_gpu_min": candidates / gpu_min if gpu_min else None}


def _num(v, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def compare(a: dict, b: dict) -> str:
    lines = [f"{'':28}{a['run'][:22]:>24}{b['run'][:22]:>24}"]
    for key, fmt in (("candidates_after_seed", "d"), ("gpu_minutes", ".2f"),
                     ("candidates_per_gpu_min", ".2f")):
        lines.append(f"{key:28}{_num(a.get(key), fmt):>24}{_num(b.get(key), fmt):>24}")
    for i in range(max(len(a["per_worker"]), len(b["per_worker"]))):
        pa = a["per_worker"][i] if i < len(a["per_worker"]) else {}
        pb = b["per_worker"][i] if i < len(b["per_worker"]) else {}
        lines.append(f"{'timing share ' + str(pa.get('name') or pb.get('name')):28}"
                     f"{_num(pa.get('timing_share')):>24}{_num(pb.get('timing_share')):>24}")
    x, y = a.get("candidates_per_gpu_min"), b.get("candidates_per_gpu_min")
    lines.append(f"candidates per GPU-minute, first / second: {_num(x / y if x and y else None)}")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1] == "--compare":
        print(compare(stats(Path(sys.argv[2])), stats(Path(sys.argv[3]))))
        return
    d = stats(Path(sys.argv[1]))
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(d, indent=1))
    print(json.dumps({k: v for k, v in d.items() if k not in ("workers", "per_worker")}, indent=1))
    for p in d["per_worker"]:
        print(f"{p['name']}: wall {p['wall_s']:.0f} s, timing share {_num(p['timing_share'])}, "
              f"compile {p['compile_s']:.0f} s, jobs/min {_num(p['jobs_per_min'])}")
    for w in d["workers"]:
        print("worker", json.dumps(w))


if __name__ == "__main__":
    main()
