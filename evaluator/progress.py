"""Stage announcements of an evaluation, for ``EvalOptions.on_stage`` (parent side).

The worker prints ``[evaluator-worker] stage: NAME t=...`` lines to its log. The parent
follows the log as it is written (``LogFollower.poll`` from the run loop of
``spawn.drive_worker``) and forwards each new stage to a ``StageReporter``, which calls
the caller's callback with known names only, never twice in a row, at most
``MAX_CALLS`` times, and swallows whatever the callback raises. The runner itself
reports ``checker`` while the trusted checker runs and ``profile-ncu`` while Nsight
Compute profiles (evaluator/ncu.py).

The log is written by an untrusted process, so the announcements are progress
information only: nothing is decided from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

STAGES = ("init", "baselines", "confine", "import", "precompile", "correctness",
          "awaiting-gpu", "awaiting-verdict", "timing", "profile", "done", "checker",
          "profile-ncu")
MARKER = "[evaluator-worker] stage:"
MAX_CALLS = 64
READ_CHUNK = 1 << 20
MAX_READ_PER_POLL = 16 << 20


class StageReporter:
    """Forwards stage names to a callback (None: does nothing)."""

    def __init__(self, callback: Callable[[str], None] | None):
        self.callback = callback
        self.last: str | None = None
        self.calls = 0

    def __call__(self, stage: str) -> None:
        if stage not in STAGES or stage == self.last or self.calls >= MAX_CALLS:
            return
        self.last = stage
        self.calls += 1
        if self.callback is None:
            return
        try:
            self.callback(stage)
        except Exception:  # noqa: BLE001 - a progress callback never breaks an evaluation
            pass


def stage_of(line: str) -> str | None:
    """The stage a worker log line announces, or None."""
    if MARKER not in line:
        return None
    rest = line.split(MARKER, 1)[1].split()
    return rest[0] if rest else None


class LogFollower:
    """Reads a growing log file incrementally and reports the stage lines it finds."""

    def __init__(self, path: Path, report: Callable[[str], None]):
        self.path = Path(path)
        self.report = report
        self.offset = 0
        self.partial = b""

    def poll(self, *, final: bool = False) -> None:
        """Read what was appended since the last poll (up to ``MAX_READ_PER_POLL`` unless
        ``final``); ``final`` also reports a last line without newline."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                budget = MAX_READ_PER_POLL
                while final or budget > 0:
                    data = f.read(READ_CHUNK)
                    if not data:
                        break
                    budget -= len(data)
                    self.offset += len(data)
                    self._feed(data)
        except OSError:
            return
        if final and self.partial:
            self._line(self.partial)
            self.partial = b""

    def _feed(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > READ_CHUNK:  # a huge line without newline: drop it
            self.partial = b""
        for raw in lines:
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        stage = stage_of(raw.decode("utf-8", "replace"))
        if stage is not None:
            self.report(stage)
