"""A synthetic run directory for the dashboard tests: lineage.db written with sqlite-utils
following docs/architecture.md, and a kernels/ git repo (one commit per candidate, git
parents = lineage parents). Numbers are fixture values, not measurements; the real-loop
fixture (tests/fixture_run.py) is used where it exists."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import git
import sqlite_utils

from evolve.records import AgentStep, Candidate, Event, Measurement, RunRecord, SessionRecord

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
SHAPES = [("S=64 causal", 64, True), ("S=128", 128, False)]

# id, parent, parent2, operator, status, score, failure class, failure message, block_m
PLAN = [
    (0, None, None, "seed", "ok", 0.0421, None, None, 64),
    (1, 0, None, "offline", "ok", 0.0517, None, None, 32),
    (2, 0, None, "agent", "rejected", None, "mismatch",
     "max |out-ref| 0.51 > tolerance at S=64 causal", 16),
    (3, 1, None, "agent", "ok", 0.0633, None, None, 128),
    (4, 3, 1, "offline", "ok", 0.0588, None, None, 96),
    (5, 3, None, "agent", "rejected", None, "compile", "triton.CompilationError: dot shape", 8),
]

KERNEL = '''"""Fixture kernel {cid}."""
import torch

CONFIG = {{"BLOCK_M": {block_m}, "BLOCK_N": 64, "num_warps": 4}}
SEARCH_SPACE = {{"BLOCK_M": [8, 16, 32, 64, 96, 128]}}


def attention(q, k, v, *, causal=False, sm_scale=None):
    # block_m={block_m}
    return torch.empty_like(q)
'''


def _shape_rows(cid: int, score: float, flex: bool) -> tuple[list[dict], list[dict]]:
    meas, shapes = [], []
    for i, (name, s, causal) in enumerate(SHAPES):
        base = 0.30 * (i + 1)
        ms = base / score
        baselines = {"cudnn": base, "flex": base * 1.25} if flex else {"sdpa-cpu": base}
        flops = 4 * 1 * 4 * s * s * 64 / (2 if causal else 1)
        row = dict(candidate_id=cid, shape=name, B=1, Hq=4, Hkv=2, S=s, D=64, causal=causal,
                   dtype="float16", ms=ms, tflops=flops / (ms * 1e-3) / 1e12, baseline_ms=base,
                   speedup=base / ms, error=1e-3 * (i + 1), error_ratio=0.9,
                   baselines_json=json.dumps(baselines))
        meas.append(Measurement.from_row(row).to_row())
        d = {k: v for k, v in row.items() if k not in ("candidate_id", "shape", "baselines_json")}
        shapes.append({"name": name, **d, "baselines": baselines})
    return meas, shapes


def make_synthetic_run(root: Path, name: str = "gqa-synth", status: str = "finished",
                       flex: bool = False, n: int | None = None) -> Path:
    """Write a run with the first ``n`` candidates of PLAN (all by default)."""
    run_dir = Path(root) / name
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "run.toml").write_text(f'name = "{name}"\ntarget = "gqa"\n')
    repo = git.Repo.init(run_dir / "kernels")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "fixture").set_value("user", "email", "fixture@example.invalid")
    db = sqlite_utils.Database(run_dir / "lineage.db")
    db.enable_wal()
    plan = PLAN[: n if n is not None else len(PLAN)]
    end = T0 + timedelta(minutes=10 * len(plan))
    db["runs"].insert(RunRecord(
        name=name, target="gqa", operator="agent", model="fixture-model", suite="smoke",
        status=status, created_at=T0.isoformat(), updated_at=end.isoformat(),
        config_json=json.dumps({"max_candidates": len(plan)}),
        fingerprint_json=json.dumps({"gpu": "NVIDIA H100 80GB HBM3" if flex else None}),
    ).to_row(), pk="name")
    shas: dict[int, str] = {}
    depth: dict[int, int] = {}
    for cid, pid, p2, op, st, score, fcls, fmsg, block_m in plan:
        src = KERNEL.format(cid=cid, block_m=block_m)
        (run_dir / "kernels" / "kernel.py").write_text(src)
        repo.index.add(["kernel.py"])
        parents = [repo.commit(shas[p]) for p in (pid, p2) if p is not None]
        commit = repo.index.commit(f"candidate {cid}: try BLOCK_M={block_m}\n\nCandidate-Id: {cid}\n"
                                   f"Operator: {op}", parent_commits=parents or None)
        shas[cid] = commit.hexsha
        git.Reference.create(repo, f"refs/candidates/{cid}", commit)
        depth[cid] = 0 if pid is None else depth[pid] + 1
        created = T0 + timedelta(minutes=10 * cid + 5)
        meas, shapes = _shape_rows(cid, score, flex) if score else ([], [])
        failure = {"class": fcls, "message": fmsg, "shape": None} if fcls else None
        result = {"status": st, "failure": failure, "score": score, "target": "gqa", "suite": "smoke",
                  "device": "cuda" if flex else "interpreter", "shapes": shapes,
                  "primary_baseline": "cudnn" if flex else "sdpa-cpu",
                  "env": {"gpu": "NVIDIA H100 80GB HBM3" if flex else None}}
        session = f"s{cid}" if op == "agent" else None
        tokens = (1200 * cid, 300 * cid) if session else (0, 0)
        cost = round(0.002 * cid, 4) if session else 0.0
        db["candidates"].insert(Candidate(
            id=cid, parent_id=pid, parent2_id=p2, operator=op, commit_sha=commit.hexsha,
            source_sha256=hashlib.sha256(src.encode()).hexdigest(), status=st, score=score,
            failure_class=fcls, failure_message=fmsg,
            hypothesis=f"BLOCK_M={block_m} should suit the smoke shapes better",
            changes_json=json.dumps({"knobs": {"BLOCK_M": block_m}}), suite="smoke",
            device=result["device"], eval_seconds=3.5 + cid, variation_seconds=1.0,
            tokens_in=tokens[0], tokens_out=tokens[1], cost_usd=cost, session_id=session,
            depth=depth[cid], created_at=created.isoformat(), result_json=json.dumps(result),
        ).to_row(), pk="id")
        if meas:
            db["measurements"].insert_all(meas)
        if session:
            _write_session(db, session, cid, pid, created, tokens, cost)
        db["events"].insert(Event(kind="seed" if cid == 0 else "warning",
                                  message=f"candidate {cid} recorded", candidate_id=cid,
                                  ts=created.isoformat()).to_row())
    repo.create_head("best", repo.commit(shas[max((p for p in plan if p[5]), key=lambda p: p[5])[0]]))
    db.conn.close()
    return run_dir


def _write_session(db: sqlite_utils.Database, sid: str, cid: int, pid: int, created: datetime,
                   tokens: tuple[int, int], cost: float) -> None:
    db["sessions"].insert(SessionRecord(
        id=sid, parent_id=pid, parent2_id=None, operator="agent", model="fixture-model",
        outcome="submitted", candidate_id=cid, reason="submitted with a hypothesis",
        tool_calls=2, evaluations=1, tokens_in=tokens[0], tokens_out=tokens[1], cost_usd=cost,
        started_at=(created - timedelta(minutes=3)).isoformat(), ended_at=created.isoformat(),
    ).to_row(), pk="id")
    steps = [("assistant", None, {}, "I will shrink BLOCK_M to cut register pressure"),
             ("tool", "read_kernel", {"path": "kernel.py"}, "kernel.py, 11 lines"),
             ("tool", "evaluate", {"suite": "smoke"}, f"evaluation finished for candidate {cid}")]
    db["agent_steps"].insert_all(AgentStep(
        session_id=sid, step=i, role=role, tool=tool, arguments_json=json.dumps(args),
        result_summary=summary, tokens_in=tokens[0] // 3, tokens_out=tokens[1] // 3, latency_s=1.5,
        created_at=(created - timedelta(minutes=3 - i)).isoformat()).to_row()
        for i, (role, tool, args, summary) in enumerate(steps))


def fixture_run_dir(root: Path) -> Path:
    """The real loop's fixture run (tests/fixture_run.py)."""
    from fixture_run import make_fixture_run

    return Path(make_fixture_run(root))


def private_runs_dir(root: Path) -> Path:
    """A runs directory of our own holding a copy of the fixture run (so tests may add runs
    beside it without touching the session's shared fixture)."""
    from fixture_run import copy_fixture_run

    return Path(copy_fixture_run(root, "fixture-gqa")).parent
