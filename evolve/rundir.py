"""Layout of one run directory (runs/<name>/) and run naming."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RunDirError(Exception):
    """A run directory is missing, malformed, or a run name is invalid."""


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def db(self) -> Path:
        return self.root / "lineage.db"

    @property
    def kernels(self) -> Path:
        return self.root / "kernels"

    @property
    def config(self) -> Path:
        return self.root / "run.toml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def run_log(self) -> Path:
        return self.logs / "run.log"

    def eval_log(self, cid: int) -> Path:
        return self.logs / f"{cid}.log"

    def scratch_for(self, cid: int | str) -> Path:
        return self.scratch / str(cid)

    def exists(self) -> bool:
        return self.db.is_file() and self.config.is_file()

    def make_dirs(self) -> None:
        for d in (self.root, self.logs, self.scratch):
            d.mkdir(parents=True, exist_ok=True)


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
