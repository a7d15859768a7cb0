"""Read-only access to run directories, for the dashboard and other viewers.

Nothing here writes: lineage.db is opened with ``mode=ro`` (a live run keeps writing
to it in WAL mode; each read is one consistent snapshot) and the kernels/ git repo is
only read through GitPython. A run directory that is missing, empty, half-written or
busy raises :class:`RunNotReady` with a message meant for a human.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evaluator import geomean
from evolve.gitrepo import KernelRepo, RepoError
from evolve.lock import holder_alive
from evolve.records import RunRecord
from evolve.run import RunPaths
from evolve.store import champion_id


class RunNotReady(Exception):
    """A run directory cannot be read (yet): the message says why, in plain words."""


@dataclass
class RunSummary:
    """One row of the runs table. A run is identified by its FOLDER name (``name``); the name
    stored in its DB is ``record.name``. ``status`` is the effective one: a DB that says
    ``running`` while no live process holds run.lock is ``interrupted``, stopped at
    ``stopped_at``."""

    name: str
    path: Path
    record: RunRecord = field(default_factory=lambda: run_record({}))
    status: str = ""
    stopped_at: datetime | None = None
    candidates: int = 0
    rejected: int = 0
    best_score: float | None = None  # the champion's (evolve.store.champion_id)
    best_id: int | None = None
    top_id: int | None = None  # the highest single score: not the champion when it lost a rematch
    top_score: float | None = None
    seed_score: float | None = None
    elapsed_s: float | None = None
    gpu: str = ""
    device: str = ""
    cost_usd: float = 0.0
    problem: str | None = None  # set when the run could not be read

    @property
    def ready(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        """Folder name, with the stored name beside it when they differ."""
        stored = self.record.name
        return self.name if not stored or stored == self.name else f"{self.name} ({stored})"


@dataclass
class RunSnapshot:
    """Every table of one run, read in a single transaction (rows as dicts)."""

    path: Path
    run: dict[str, Any]
    candidates: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    agent_steps: list[dict[str, Any]]
    events: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    champion_id: int | None = None  # evolve.store.champion_id, read in the same transaction

    @property
    def name(self) -> str:
        return self.path.name  # the folder: what `evolve status/best/show RUN` takes

    def candidate(self, cid: int) -> dict[str, Any]:
        for c in self.candidates:
            if c["id"] == cid:
                return c
        raise KeyError(f"run {self.name} has no candidate {cid}")


def parse_time(value: str | None) -> datetime | None:
    """ISO-8601 text from the DB -> aware UTC datetime (None when absent or garbled)."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def db_signature(run_dir: Path) -> tuple[int, ...]:
    """Cheap change detector: sizes and mtimes of lineage.db and its WAL."""
    db, sig = RunPaths(run_dir).db, []
    for p in (db, db.with_name(db.name + "-wal")):
        try:
            st = p.stat()
            sig += [st.st_mtime_ns, st.st_size]
        except OSError:
            sig += [0, 0]
    return tuple(sig)


def find_run_dirs(runs_dir: Path) -> list[Path]:
    """Run directories under runs_dir (any subfolder holding lineage.db or run.toml);
    runs_dir itself when it is a run directory."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    if RunPaths(runs_dir).db.exists():
        return [runs_dir]
    return sorted(p for p in runs_dir.iterdir()
                  if p.is_dir() and (RunPaths(p).db.exists() or RunPaths(p).config.exists()))


def connect(run_dir: Path) -> sqlite3.Connection:
    """lineage.db of a run, opened read-only (rows as sqlite3.Row); RunNotReady when absent."""
    paths = RunPaths(run_dir)
    db = paths.db
    if not db.is_file():
        raise RunNotReady(f"run {paths.name}: no {db.name} yet (the run is starting "
                          "or this is not a run directory)")
    if db.stat().st_size == 0:
        raise RunNotReady(f"run {paths.name}: {db.name} is still empty (the run is starting)")
    try:
        # read-only URI, path percent-quoted ('#', '?' in a folder name are safe)
        conn = sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as e:
        raise RunNotReady(f"run {paths.name}: cannot open {db.name}: {e}") from e
    conn.row_factory = sqlite3.Row
    return conn


def _rows(conn: sqlite3.Connection, table: str, present: set[str], order: str) -> list[dict[str, Any]]:
    if table not in present:
        return []
    return [dict(r) for r in conn.execute(f"SELECT * FROM [{table}] ORDER BY {order}")]


def read_snapshot(run_dir: Path) -> RunSnapshot:
    """All tables of one run as one consistent snapshot; RunNotReady when not readable."""
    run_dir = Path(run_dir)
    conn = connect(run_dir)
    try:
        conn.execute("BEGIN")  # one read transaction = one WAL snapshot
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" not in present or "candidates" not in present:
            raise RunNotReady(f"run {run_dir.name}: the database has no tables yet (the run is starting)")
        runs = _rows(conn, "runs", present, "created_at")
        if not runs:
            raise RunNotReady(f"run {run_dir.name}: no run record yet (the run is starting)")
        snap = RunSnapshot(
            path=run_dir,
            run=runs[-1],
            candidates=_rows(conn, "candidates", present, "id"),
            sessions=_rows(conn, "sessions", present, "started_at"),
            agent_steps=_rows(conn, "agent_steps", present, "session_id, step"),
            events=_rows(conn, "events", present, "ts"),
            workers=_rows(conn, "workers", present, "name"),
            champion_id=champion_id(conn) if "events" in present else None,
        )
        conn.execute("COMMIT")
        return snap
    except sqlite3.DatabaseError as e:
        raise RunNotReady(f"run {run_dir.name}: lineage.db cannot be read right now ({e}); "
                          "it may be mid-write, try again in a moment") from e
    finally:
        conn.close()


def json_dict(text: str | None) -> dict[str, Any]:
    """A JSON column as a dict ({} when empty, garbled or not an object)."""
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def run_gpu(snap: RunSnapshot) -> str:
    """The GPU named by the run's fingerprint or, failing that, by its latest evaluation."""
    gpu = json_dict(snap.run.get("fingerprint_json")).get("gpu")  # evolve.fingerprint.collect
    if gpu:
        return str(gpu)
    for c in reversed(snap.candidates):
        gpu = json_dict(c.get("result_json")).get("env", {}).get("gpu")
        if gpu:
            return str(gpu)
    return "none (CPU)"


def run_record(row: dict[str, Any]) -> RunRecord:
    """The runs row as a RunRecord (columns a half-written DB lacks are empty)."""
    blank = dict.fromkeys(("name", "target", "operator", "model", "suite", "status"), "")
    return RunRecord.from_row({**blank, **{k: v for k, v in row.items() if v is not None}})


def stopped_at(snap: RunSnapshot) -> datetime | None:
    """When the run last did something: the latest of updated_at, events, candidates, workers."""
    stamps = [snap.run.get("updated_at")] + [e.get("ts") for e in snap.events[-1:]]
    stamps += [c.get("created_at") for c in snap.candidates[-1:]] + [w.get("updated") for w in snap.workers]
    times = [t for t in map(parse_time, stamps) if t is not None]
    return max(times) if times else None


def summarize(snap: RunSnapshot, now: datetime | None = None) -> RunSummary:
    cands = snap.candidates
    ok = [c for c in cands if c.get("status") == "ok" and _finite(c.get("score"))]
    best = next((c for c in ok if c["id"] == snap.champion_id), None)
    top = max(ok, key=lambda c: c["score"], default=None)
    seed = next((c for c in cands if c["id"] == 0), None)
    status = str(snap.run.get("status") or "")
    if status == "running" and not holder_alive(RunPaths(snap.path).lock):
        status = "interrupted"  # the DB says running, but no live process holds the lock
    start = parse_time(snap.run.get("created_at"))
    end = (now or datetime.now(timezone.utc)) if status == "running" else stopped_at(snap)
    elapsed = (end - start).total_seconds() if start and end else None
    cost = sum(float(s.get("cost_usd") or 0) for s in snap.sessions) if snap.sessions else \
        sum(float(c.get("cost_usd") or 0) for c in cands)
    return RunSummary(
        name=snap.name, path=snap.path, record=run_record(snap.run), status=status,
        stopped_at=None if status == "running" else end,
        candidates=len(cands), rejected=sum(c.get("status") == "rejected" for c in cands),
        best_score=best["score"] if best else None, best_id=best["id"] if best else None,
        top_id=top["id"] if top else None, top_score=top["score"] if top else None,
        seed_score=seed.get("score") if seed else None, elapsed_s=elapsed, gpu=run_gpu(snap),
        device=str(cands[-1].get("device") or "") if cands else "", cost_usd=cost,
    )


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """A summary per run directory; unreadable ones carry ``problem`` instead of raising."""
    out = []
    for d in find_run_dirs(runs_dir):
        try:
            out.append(summarize(read_snapshot(d)))
        except RunNotReady as e:
            out.append(RunSummary(name=d.name, path=d, status="not ready", problem=str(e)))
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def result_of(c: dict[str, Any]) -> dict[str, Any]:
    """A candidate row's stored EvalResult dict (result_json; {} when absent)."""
    return json_dict(c.get("result_json"))


def measured_score(c: dict[str, Any]) -> tuple[float | None, bool]:
    """(score, pre-screen?): an ok candidate's score, or for a `slow` rejection the geomean
    speedup its quick pre-screen measured (over the quick shapes only); else (None, False)."""
    if c.get("status") == "ok" and _finite(c.get("score")):
        return float(c["score"]), False
    speedups = [s.get("speedup") for s in result_of(c).get("shapes") or []]
    if c.get("failure_class") == "slow" and speedups and all(_finite(x) and x > 0 for x in speedups):
        return geomean(speedups), True
    return None, False


def fmt_elapsed(seconds: float | None) -> str:
    """`1:02:03` (hours:minutes:seconds), the same in the CLI and the dashboard; `-` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def short_shape(s: dict[str, Any]) -> str:
    """`16x32/8 d128 1k c`: B x Hq/Hkv, head dim, sequence length, c = causal (dtype unless bf16)."""
    n = int(s.get("S") or 0)
    length = f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)
    dtype = {"bfloat16": "", "float16": " fp16", "float32": " fp32"}.get(str(s.get("dtype")), f" {s.get('dtype')}")
    return (f"{s.get('B')}x{s.get('Hq')}/{s.get('Hkv')} d{s.get('D')} {length}"
            + (" c" if s.get("causal") else "") + dtype)


# ---- kernels/ git repository (read-only) ---------------------------------------------

def candidate_source(run_dir: Path, commit_sha: str | None, cid: int) -> str:
    """kernel.py as committed for one candidate (by commit, else refs/candidates/<id>)."""
    paths = RunPaths(run_dir)
    try:
        repo = KernelRepo.open(paths.kernels)
    except RepoError as e:
        raise RunNotReady(f"run {paths.name}: no kernels/ git repository yet ({e})") from e
    try:
        return repo.source_at(commit_sha or cid)
    except RepoError as e:
        raise RunNotReady(f"run {paths.name}: candidate {cid}: {e}") from e
    finally:
        repo.repo.close()
