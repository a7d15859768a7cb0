"""A real, small run made by the evolution loop on CPU, shared by the tests of a session.

`make_fixture_run(tmp_dir)` runs `evolve start --target gqa --max-candidates 4
--operator offline` once per pytest session (in the Triton interpreter, smoke suite)
and returns the run directory. Tests that modify a run must copy it first
(`copy_fixture_run`).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

FIXTURE_NAME = "fixture-gqa"
FIXTURE_CANDIDATES = 4
_CACHE: dict[str, Path] = {}


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: no LLM endpoint, so nothing calls out."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "COLUMNS")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def evolve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "evolve.cli", *args]


def procs_under(path: Path) -> list[int]:
    """Live processes whose cwd lies under `path` (what a run or a worker left running)."""
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                cwd = os.readlink(f"/proc/{e}/cwd")
            except OSError:
                continue
            if cwd == str(path) or cwd.startswith(str(path) + "/"):
                out.append(int(e))
    return out


def make_fixture_run(tmp_dir: Path) -> Path:
    """The run directory of the session's fixture run (made on first use)."""
    if "run" in _CACHE and (_CACHE["run"] / "lineage.db").is_file():
        return _CACHE["run"]
    runs = Path(tmp_dir) / "fixture-runs"
    runs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        evolve_cmd("start", "--target", "gqa", "--operator", "offline",
                   "--max-candidates", str(FIXTURE_CANDIDATES), "--name", FIXTURE_NAME,
                   "--runs-dir", str(runs), "--rng-seed", "7"),
        capture_output=True, text=True, env=cli_env(), timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"fixture run failed (rc {proc.returncode}):\n{proc.stdout}\n"
                           f"{proc.stderr}")
    run_dir = runs / FIXTURE_NAME
    _CACHE["run"] = run_dir
    _CACHE["stdout"] = Path(run_dir / "logs" / "start.stdout")
    _CACHE["stdout"].write_text(proc.stdout, encoding="utf-8")
    return run_dir


def copy_fixture_run(tmp_dir: Path, dest_name: str) -> Path:
    """A private copy of the fixture run (for tests that resume or otherwise change it)."""
    dest = Path(tmp_dir) / "copies" / dest_name
    dest.parent.mkdir(parents=True, exist_ok=True)
    return copy_run(make_fixture_run(tmp_dir), dest)


def copy_run(src: Path, dest: Path) -> Path:
    """Copy run directory ``src`` to ``dest`` (which must not exist) while others read it."""
    # Other tests read the shared run meanwhile (a dashboard server, status commands): their
    # SQLite -wal/-shm files come and go, so the database is copied with SQLite's backup.
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("lineage.db*"))
    source = sqlite3.connect(f"file:{src / 'lineage.db'}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dest / "lineage.db")
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return dest
