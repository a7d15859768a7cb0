"""The lineage store: one run's lineage.db (SQLite through sqlite-utils, WAL mode).

Every table is append-only except `runs` (status / updated_at) and `workers` (the
evaluation workers' utilisation snapshot, upserted by the orchestrator). Failed candidates
are kept with their failure class and message. See docs/architecture.md.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path
from typing import Any

import sqlite_utils

from evolve.executors.base import WorkerStatus
from evolve.records import (
    AgentStep,
    Candidate,
    Event,
    RunRecord,
    SessionRecord,
    utc_now,
)


class StoreError(Exception):
    """lineage.db is missing, malformed, or a write would break an invariant."""


RUN_STATUSES = ("running", "stopped", "interrupted", "finished")

# table -> (record, primary key); the columns are the record's fields (a candidate's
# source lives in git, not here)
_TABLES: dict[str, tuple[Any, str | None]] = {
    "runs": (RunRecord, "name"), "candidates": (Candidate, "id"),
    "sessions": (SessionRecord, "id"), "agent_steps": (AgentStep, None), "events": (Event, None)}
_TYPES = {"int": int, "float": float, "str": str}


def _columns(record: Any) -> dict[str, type]:
    return {f.name: _TYPES[str(f.type).split(" | ")[0]] for f in fields(record)
            if f.name != "source"}


_INDEXES = [
    ("candidates", ["source_sha256"]),
    ("candidates", ["status"]),
    ("agent_steps", ["session_id"]),
    ("events", ["kind"]),
]


def champion_id(conn: sqlite3.Connection) -> int | None:
    """The run's champion: the ONE definition used by the loop, the CLI, export, the dashboard
    and the agent's brief. It is the candidate of the latest `new_best` event (a GPU challenger
    gets one only after winning its rematch), else the seed (#0) when it is ok, else None.
    The highest single score is not the champion (it may have lost its rematch)."""
    row = conn.execute(
        "SELECT candidate_id FROM events WHERE kind = 'new_best' AND candidate_id IS NOT NULL "
        "ORDER BY rowid DESC LIMIT 1").fetchone()
    if row is not None:
        return int(row[0])
    seed = conn.execute("SELECT status FROM candidates WHERE id = 0").fetchone()
    return 0 if seed is not None and seed[0] == "ok" else None


class LineageStore:
    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path

    # --- open / create -------------------------------------------------------

    @classmethod
    def create(cls, db_path: Path, run: RunRecord) -> "LineageStore":
        db_path = Path(db_path)
        if db_path.exists():
            raise StoreError(f"{db_path} already exists")
        db = sqlite_utils.Database(db_path)
        db.enable_wal()
        with db.atomic():
            for name, (record, pk) in _TABLES.items():
                db.table(name).create(_columns(record), pk=pk)
            for table, cols in _INDEXES:
                db.table(table).create_index(cols)
            db.table("runs").insert(run.to_row())
        return cls(db, db_path)

    @classmethod
    def open(cls, db_path: Path) -> "LineageStore":
        db_path = Path(db_path)
        if not db_path.is_file():
            raise StoreError(f"no lineage database at {db_path}")
        db = sqlite_utils.Database(db_path)
        missing = [t for t in ("runs", "candidates", "events") if not db.table(t).exists()]
        if missing:
            raise StoreError(f"{db_path} is not a lineage database (missing {', '.join(missing)})")
        db.execute("PRAGMA busy_timeout = 10000")
        return cls(db, db_path)

    def close(self) -> None:
        self.db.close()

    # --- run -----------------------------------------------------------------

    def run(self) -> RunRecord:
        rows = list(self.db.table("runs").rows)
        if len(rows) != 1:
            raise StoreError(f"{self.path}: expected one run row, found {len(rows)}")
        return RunRecord.from_row(rows[0])

    def set_run_status(self, status: str) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}")
        name = self.run().name
        with self.db.atomic():
            self.db.table("runs").update(name, {"status": status, "updated_at": utc_now()})

    # --- candidates ----------------------------------------------------------

    def next_candidate_id(self) -> int:
        row = self.db.execute("SELECT MAX(id) FROM candidates").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def add_candidate(self, c: Candidate) -> None:
        """Insert an evaluated candidate (never twice); its per-shape numbers are in
        `result_json` (runs made before that also have a `measurements` table, unused)."""
        if c.status not in ("ok", "rejected") or c.id < 0:
            raise StoreError(f"candidate {c.id} is not evaluated ({c.status})")
        with self.db.atomic():
            if self.db.execute("SELECT 1 FROM candidates WHERE id = ?", [c.id]).fetchone():
                raise StoreError(f"candidate {c.id} is already recorded")
            # alter: a run made before a Candidate field existed gets its column here
            self.db.table("candidates").insert(c.to_row(), alter=True)

    def _select(self, record: Any, table: str, order: str, **where: Any) -> list[Any]:
        """Records of `table` in `order` whose columns equal the non-None `where` values."""
        where = {k: v for k, v in where.items() if v is not None}
        cond = " WHERE " + " AND ".join(f"{k} = ?" for k in where) if where else ""
        rows = self.db.query(f"SELECT * FROM {table}{cond} ORDER BY {order}", list(where.values()))
        return [record.from_row(r) for r in rows]

    def get_candidate(self, cid: int) -> Candidate | None:
        rows = self._select(Candidate, "candidates", "id", id=int(cid))
        return rows[0] if rows else None

    def candidates(self, status: str | None = None) -> list[Candidate]:
        return self._select(Candidate, "candidates", "id", status=status)

    def candidate_ids(self) -> set[int]:
        return {int(r[0]) for r in self.db.execute("SELECT id FROM candidates").fetchall()}

    def has_source(self, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM candidates WHERE source_sha256 = ? LIMIT 1",
                               [sha256]).fetchone() is not None

    def best(self) -> Candidate | None:
        """The champion (see `champion_id`)."""
        cid = champion_id(self.db.conn)
        return None if cid is None else self.get_candidate(cid)

    # --- events --------------------------------------------------------------

    def add_event(self, e: Event) -> None:
        with self.db.atomic():
            self.db.table("events").insert(e.to_row())

    def events(self, kind: str | None = None) -> list[Event]:
        return self._select(Event, "events", "rowid", kind=kind)

    # --- agent sessions ------------------------------------------------------

    def record_session(self, s: SessionRecord, steps: list[AgentStep] | tuple = ()) -> None:
        """An agent session and its steps, in one transaction. A session posted again
        (its spend so far while open, then its end) replaces its row."""
        with self.db.atomic():
            self.db.table("sessions").upsert(s.to_row(), pk="id")
            if steps:
                self.db.table("agent_steps").insert_all([a.to_row() for a in steps])

    def sessions(self) -> list[SessionRecord]:
        return self._select(SessionRecord, "sessions", "started_at, rowid")

    def agent_steps(self, session_id: str) -> list[AgentStep]:
        return self._select(AgentStep, "agent_steps", "step, rowid", session_id=session_id)

    # --- totals --------------------------------------------------------------

    def totals(self) -> dict[str, Any]:
        """Tokens and cost over the run: agent sessions, plus candidates made outside one."""
        s = self.db.execute("SELECT COALESCE(SUM(tokens_in),0), COALESCE(SUM(tokens_out),0), "
                            "COALESCE(SUM(cost_usd),0) FROM sessions").fetchone()
        c = self.db.execute(
            "SELECT COALESCE(SUM(tokens_in),0), COALESCE(SUM(tokens_out),0), "
            "COALESCE(SUM(cost_usd),0) FROM candidates WHERE session_id IS NULL "
            "OR session_id NOT IN (SELECT id FROM sessions)").fetchone()
        return {"tokens_in": int(s[0] + c[0]), "tokens_out": int(s[1] + c[1]),
                "cost_usd": float(s[2] + c[2])}

    def counts(self) -> dict[str, Any]:
        """Candidates by status and by failure class (for `evolve status`)."""
        by_status = dict(self.db.execute(
            "SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())
        by_class = dict(self.db.execute(
            "SELECT failure_class, COUNT(*) FROM candidates WHERE failure_class IS NOT NULL "
            "GROUP BY failure_class ORDER BY COUNT(*) DESC").fetchall())
        return {"total": sum(by_status.values()), "by_status": by_status, "by_class": by_class}

    # --- evaluation workers (a snapshot table, upserted; see evolve/executors) ---

    def upsert_workers(self, rows: list[dict[str, Any]]) -> None:
        """Replace the utilisation snapshot of the named workers (table `workers`)."""
        if not rows:
            return
        with self.db.atomic():
            if not self.db.table("workers").exists():
                self.db.table("workers").create(_columns(WorkerStatus), pk="name")
            self.db.table("workers").upsert_all(rows, pk="name", alter=True)

    def workers(self) -> list[dict[str, Any]]:
        """The last utilisation snapshot of each worker ([] when the run never had one)."""
        if not self.db.table("workers").exists():
            return []
        return [dict(r) for r in self.db.query("SELECT * FROM workers ORDER BY name")]

