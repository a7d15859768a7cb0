"""run.lock: one loop per run directory; tells a dead loop from a live one."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from evolve.executors.procs import pid_alive


class RunLockedError(Exception):
    """Another live process is running the loop of this run."""


def read_lock(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def holder_alive(path: Path) -> bool:
    """True when the lock file names a live process on this host (or on another host)."""
    info = read_lock(path)
    if not info:
        return False
    if info.get("hostname") != socket.gethostname():
        return True  # cannot tell; assume it is alive
    return pid_alive(int(info.get("pid", -1)))


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.held = False

    def acquire(self) -> None:
        info = {"pid": os.getpid(), "hostname": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if holder_alive(self.path):
                    held = read_lock(self.path) or {}
                    raise RunLockedError(
                        f"run is in use by pid {held.get('pid')} on {held.get('hostname')} "
                        f"(remove {self.path} if that process is gone)") from None
                self.path.unlink(missing_ok=True)  # stale lock of a dead loop
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
            self.held = True
            return
        raise RunLockedError(f"could not take {self.path}")

    def release(self) -> None:
        if self.held:
            info = read_lock(self.path) or {}
            if info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
