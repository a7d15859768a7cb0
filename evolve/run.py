"""A run directory (runs/<name>/): its layout (RunPaths), naming, and RunHandle (its
paths, lineage store, kernel repository and configuration, opened together)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evolve.config import RunConfig, read_run_toml, write_run_toml
from evolve.gitrepo import KernelRepo
from evolve.lock import holder_alive
from evolve.records import Event, RunRecord, utc_now
from evolve.store import LineageStore

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RunDirError(Exception):
    """A run directory is missing, malformed, or a run name is invalid."""


class RunPaths:
    """The files of one run directory (equal when the roots are)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.name = self.root.name
        self.db = self.root / "lineage.db"
        self.kernels = self.root / "kernels"  # the git repository
        self.config = self.root / "run.toml"
        self.logs = self.root / "logs"
        self.scratch = self.root / "scratch"
        self.lock = self.root / "run.lock"
        self.run_log = self.logs / "run.log"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunPaths) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"RunPaths({str(self.root)!r})"

    def eval_log(self, cid: int) -> Path:
        return self.logs / f"{cid}.log"

    def exists(self) -> bool:
        return self.db.is_file() and self.config.is_file()

    def make_dirs(self) -> None:
        for d in (self.root, self.logs, self.scratch):
            d.mkdir(parents=True, exist_ok=True)

    def clear_scratch(self) -> None:
        """Remove what a loop that died mid-evaluation left in scratch/. Only under the run
        lock and before this process starts an executor (its workers pre-start in there)."""
        if self.scratch.is_dir():
            for leftover in self.scratch.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise RunDirError(f"invalid run name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def default_name(target: str, operator: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{target}-{operator}-{now.strftime('%Y%m%d-%H%M%S')}"


def resolve_run(run: str | Path, runs_dir: Path) -> RunPaths:
    """A run given by name (under runs_dir) or by path; raises RunDirError if absent."""
    candidates = [Path(run)]
    if not Path(run).is_absolute():
        candidates.insert(0, Path(runs_dir) / str(run))
    for c in candidates:
        paths = RunPaths(c.resolve())
        if paths.exists():
            return paths
    raise RunDirError(f"no run {str(run)!r} (looked under {runs_dir} and as a path)")


def list_runs(runs_dir: Path) -> list[RunPaths]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return [RunPaths(p.resolve()) for p in sorted(runs_dir.iterdir())
            if p.is_dir() and RunPaths(p).exists()]


@dataclass
class RunHandle:
    paths: RunPaths
    store: LineageStore
    repo: KernelRepo
    config: RunConfig
    fingerprint: dict[str, Any]

    @property
    def name(self) -> str:
        return self.paths.name

    @classmethod
    def create(cls, runs_dir: Path, config: RunConfig, fingerprint: dict[str, Any]) -> "RunHandle":
        validate_name(config.name)
        paths = RunPaths((Path(runs_dir) / config.name).resolve())
        if paths.root.exists() and any(paths.root.iterdir()):
            raise RunDirError(f"run directory {paths.root} already exists; pick another --name")
        paths.make_dirs()
        write_run_toml(paths.config, config, fingerprint)
        repo = KernelRepo.init(paths.kernels)
        record = RunRecord(name=config.name, target=config.target, operator=config.operator,
                           model=config.agent.model if config.operator == "agent" else "",
                           suite=config.suite, status="running",
                           config_json=json.dumps(config.to_dict(), default=str),
                           fingerprint_json=json.dumps(fingerprint, default=str))
        store = LineageStore.create(paths.db, record)
        return cls(paths, store, repo, config, fingerprint)

    @classmethod
    def open(cls, root: Path | RunPaths, writable: bool = True) -> "RunHandle":
        """Open a run; `writable` (start/resume) also makes its logs/ and scratch/."""
        paths = root if isinstance(root, RunPaths) else RunPaths(Path(root).resolve())
        if not paths.exists():
            raise RunDirError(f"{paths.root} is not a run directory")
        config, fingerprint = read_run_toml(paths.config)
        store = LineageStore.open(paths.db)
        repo = KernelRepo.open(paths.kernels)
        if writable:
            paths.make_dirs()
        return cls(paths, store, repo, config, fingerprint)

    @property
    def writer(self) -> LineageStore:
        """What an operator writes through (evolve.operators.base.Writer)."""
        return self.store

    def log(self, line: str) -> None:
        """A line in logs/run.log."""
        with open(self.paths.run_log, "a", encoding="utf-8") as f:
            f.write(f"{utc_now()} {line}\n")

    def event(self, kind: str, message: str = "", cid: int | None = None,
              data: dict[str, Any] | None = None) -> None:
        """An event row, mirrored in logs/run.log."""
        self.store.add_event(Event(kind=kind, message=message, candidate_id=cid,
                                   data_json=json.dumps(data or {}, default=str)))
        self.log(f"[{kind}] {'#' + str(cid) + ' ' if cid is not None else ''}{message}")

    def save_config(self) -> None:
        write_run_toml(self.paths.config, self.config, self.fingerprint)

    def effective_status(self) -> str:
        """The stored status, or `interrupted` when it says running but no loop is alive."""
        status = self.store.run().status
        if status == "running" and not holder_alive(self.paths.lock):
            return "interrupted"
        return status

    def close(self) -> None:
        self.store.close()
        self.repo.repo.close()

