"""A synthetic run directory for the dashboard and CLI-output tests: lineage.db written with
sqlite-utils following docs/architecture.md (per-shape numbers only in result_json), and a
kernels/ git repo (one commit per candidate, git parents = lineage parents). Numbers are
fixture values, not measurements; the real-loop fixture (tests/fixture_run.py) is used where
it exists. The plan has what a real GPU run shows: a `slow` rejection with its quick
pre-screen score, and a highest single score (#7) that lost its rematch (champion: #3).
Also: start, probe and stop a real `evolve dashboard` server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import git
import sqlite_utils

from evolve.records import AgentStep, Candidate, Event, RunRecord, SessionRecord

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
# (B, Hq, Hkv, S, D, causal)
CPU_SHAPES = [(1, 4, 2, 64, 64, True), (1, 4, 2, 128, 64, False)]
GPU_SHAPES = [(b, hq, hkv, s, d, c) for hq, hkv, d in ((32, 8, 128), (64, 8, 128), (28, 4, 128), (32, 8, 64))
              for b, s in ((16, 1024), (4, 4096), (1, 16384)) for c in (False, True)]  # 24, as the default suite
QUICK = 0.0459  # the `slow` candidate's pre-screen score (geomean over its quick shapes)
# rematches: (challenger, champion, won)
REMATCHES = [(1, 0, True), (3, 1, True), (7, 3, False)]

# id, parent, parent2, operator, status, score, failure class, failure message, block_m
PLAN = [
    (0, None, None, "seed", "ok", 0.0421, None, None, 64),
    (1, 0, None, "offline", "ok", 0.0517, None, None, 32),
    (2, 0, None, "agent", "rejected", None, "mismatch",
     "max |out-ref| 0.51 > tolerance at S=64 causal", 16),
    (3, 1, None, "agent", "ok", 0.0633, None, None, 128),
    (4, 3, 1, "offline", "ok", 0.0588, None, None, 96),
    (5, 3, None, "agent", "rejected", None, "compile", "triton.CompilationError: dot shape", 8),
    (6, 3, None, "offline", "rejected", None, "slow", f"quick pre-screen: {QUICK} < 0.9 x champion 0.0633", 16),
    (7, 3, None, "offline", "ok", 0.0701, None, None, 64),
]

KERNEL = '''"""Fixture kernel {cid}."""
import torch

CONFIG = {{"BLOCK_M": {block_m}, "BLOCK_N": 64, "num_warps": 4}}
SEARCH_SPACE = {{"BLOCK_M": [8, 16, 32, 64, 96, 128]}}


def attention(q, k, v, *, causal=False, sm_scale=None):
    # block_m={block_m}
    return torch.empty_like(q)
'''


def _shapes(score: float, flex: bool, shapes: list[tuple]) -> list[dict]:
    """EvalResult.to_dict()["shapes"] for a candidate scoring `score` on every shape."""
    dtype = "bfloat16" if flex else "float16"
    out = []
    for i, (b, hq, hkv, s, d, causal) in enumerate(shapes):
        base = 0.30 * (i + 1)
        ms = base / score
        flops = 4 * b * hq * s * s * d / (2 if causal else 1)
        out.append({"name": f"B={b} Hq={hq} Hkv={hkv} S={s} D={d} {'causal' if causal else 'noncausal'} {dtype}",
                    "B": b, "Hq": hq, "Hkv": hkv, "S": s, "D": d, "causal": causal, "dtype": dtype,
                    "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12, "baseline_ms": base, "speedup": base / ms,
                    "error": 1e-3 * (i + 1), "error_ratio": 0.9,
                    "baselines": {"cudnn": base, "flex": base * 1.25} if flex else {"sdpa-cpu": base}})
    return out


def make_synthetic_run(root: Path, name: str = "gqa-synth", status: str = "finished",
                       flex: bool = False, n: int | None = None, shapes: list[tuple] | None = None,
                       stored_name: str | None = None) -> Path:
    """Write a run with the first ``n`` candidates of PLAN (all by default) in folder `name`
    (its DB says `stored_name`, the folder's name by default). A `running` run gets no
    run.lock: call `hold_lock` to make it live."""
    shapes = shapes or (GPU_SHAPES[:2] if flex else CPU_SHAPES)
    run_dir = Path(root) / name
    (run_dir / "logs").mkdir(parents=True)
    gpu = "NVIDIA H100 80GB HBM3" if flex else None
    (run_dir / "run.toml").write_text(f'[run]\nname = "{stored_name or name}"\ntarget = "gqa"\noperator = "agent"\n'
                                      f'suite = "smoke"\nseed_file = "seeds/gqa.py"\nrng_seed = 0\n' + (f'\n[fingerprint]\ngpu = "{gpu}"\n' if gpu else ""))
    repo = git.Repo.init(run_dir / "kernels")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "fixture").set_value("user", "email", "fixture@example.invalid")
    db = sqlite_utils.Database(run_dir / "lineage.db")
    db.enable_wal()
    plan = PLAN[: n if n is not None else len(PLAN)]
    end = T0 + timedelta(minutes=10 * len(plan))
    db["runs"].insert(RunRecord(
        name=stored_name or name, target="gqa", operator="agent", model="fixture-model", suite="smoke",
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
        suite = "quick" if fcls == "slow" else "smoke"
        rows = _shapes(score or QUICK, flex, shapes[:1]) if fcls == "slow" else _shapes(score, flex, shapes) \
            if score else []
        failure = {"class": fcls, "message": fmsg, "shape": None} if fcls else None
        result = {"status": st, "failure": failure, "score": score, "target": "gqa", "suite": suite,
                  "device": "cuda" if flex else "interpreter", "shapes": rows,
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
            changes_json=json.dumps({"knobs": {"BLOCK_M": block_m}}), suite=suite,
            device=result["device"], eval_seconds=3.5 + cid, variation_seconds=1.0,
            tokens_in=tokens[0], tokens_out=tokens[1], cost_usd=cost, session_id=session,
            depth=depth[cid], created_at=created.isoformat(), result_json=json.dumps(result),
        ).to_row(), pk="id")
        if session:
            _write_session(db, session, cid, pid, created, tokens, cost)
        events = [Event(kind="seed" if cid == 0 else "warning", message=f"candidate {cid} recorded",
                        candidate_id=cid, ts=created.isoformat())]
        if cid == 0:
            events.append(Event(kind="new_best", message="first correct candidate", candidate_id=0,
                                ts=created.isoformat()))
        for ch, champ, won in REMATCHES:
            if ch == cid:
                ratio = 1.0505317048116145 if won else 0.9986529677431233
                events.append(Event(kind="rematch", candidate_id=cid, ts=created.isoformat(),
                                    message=f"#{cid} vs #{champ}: " + ("wins" if won else f"loses (ratio {ratio})"),
                                    data_json=json.dumps({"challenger": cid, "champion": champ, "better": won,
                                                          "ratio": ratio, "noise": 0.03})))
                if won:
                    events.append(Event(kind="new_best", candidate_id=cid, ts=created.isoformat(),
                                        message=f"won the rematch against #{champ} (ratio {ratio})"))
        db["events"].insert_all(e.to_row() for e in events)
    db["workers"].insert({"name": "local-gpu0" if flex else "local-cpu", "gpu": 0 if flex else None,
                          "state": "idle", "job_id": None, "pid": None, "jobs_done": len(plan), "restarts": 0,
                          "busy_s": 500.0, "compile_s": 300.0, "timing_s": 150.0, "idle_s": 100.0,
                          "gpu_idle_s": 450.0, "updated": end.isoformat()}, pk="name")
    champion = max(c for c in (0, 1, 3) if c < len(plan))
    repo.create_head("best", repo.commit(shas[champion]))
    db.conn.close()
    return run_dir


def hold_lock(run_dir: Path, pid: int) -> None:
    """run.lock naming a live process on this host: the run is live."""
    (Path(run_dir) / "run.lock").write_text(json.dumps({"pid": pid, "hostname": socket.gethostname()}))


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


# ---- a real `evolve dashboard` server ------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], home: Path, out: Any = subprocess.PIPE) -> subprocess.Popen:
    """`evolve dashboard ARGS` as a user starts it (stdin from /dev/null, no display, HOME=home);
    stdout and stderr go to `out`."""
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, "-m", "evolve", "dashboard", *args], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=out, text=True, env=env, start_new_session=True)


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()


def wait_healthy(url: str, proc: subprocess.Popen, limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.read().strip() == b"ok":
                    return time.monotonic() - t0
        except OSError:
            pass
        assert proc.poll() is None, "the dashboard exited"
        time.sleep(0.2)
    raise TimeoutError(f"{url} not serving after {limit} s")
