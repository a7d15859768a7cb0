"""Proposer threads: N variation sessions in flight, the orchestrator the only writer.

Each proposer thread owns one operator instance (`factory(view)`) and a `RunView` of the
run: its own SQLite connection (reads only; sqlite3 objects never cross threads), its own
git repository object, and a `PostingWriter` whose writes (events, agent sessions) travel
to the orchestrator's inbox as messages and are applied there, in order, before the
proposal that follows them.

Messages to the orchestrator (frozen dataclasses): `Want(slot)` (ready for a context),
`EventPosted` / `SessionPosted` (a write), `Proposed` (the result of one propose() call),
`Fatal(slot, ...)` (the operator could not be made), `Activity` (a one-line progress
of the operator, e.g. a model's tokens so far), `Exited(slot)`. A proposal whose
operator raised `RunFatal` comes back with `fatal=True`: the loop stops the run. The
orchestrator answers `Want` with `pool.give(slot, ctx)`, or `pool.give(slot, None)` to stop it.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable

import sqlite_utils

from evolve.gitrepo import KernelRepo
from evolve.operators.base import Operator, RunFatal, VariationContext
from evolve.records import AgentStep, Candidate, Event, SessionRecord
from evolve.run import RunHandle
from evolve.store import LineageStore


@dataclass(frozen=True)
class Want:
    slot: int


@dataclass(frozen=True)
class EventPosted:
    event: Event


@dataclass(frozen=True)
class SessionPosted:
    record: SessionRecord
    steps: tuple[AgentStep, ...]


@dataclass(frozen=True)
class Proposed:
    slot: int
    parent_id: int
    child: Candidate | None
    error: str | None = None  # "Type: message" of an exception propose() raised
    trace: str = ""
    reason: str = ""  # the operator's last_reason when it proposed nothing
    seconds: float = 0.0
    fatal: bool = False  # the operator can never succeed as configured: stop the run


@dataclass(frozen=True)
class Activity:
    line: str  # one line of progress (shown, not stored)
    urgent: bool = False  # print it now (a wait, a switch), not only on the live panel


@dataclass(frozen=True)
class Fatal:
    slot: int
    message: str
    trace: str


@dataclass(frozen=True)
class Exited:
    slot: int


def propose(op: Operator, ctx: VariationContext, slot: int = 0) -> Proposed:
    """One propose() call; an operator bug becomes `Proposed(error=...)`, never a crash."""
    t0 = time.monotonic()
    try:
        child = op.propose(ctx)
    except RunFatal as e:
        return Proposed(slot, ctx.parent.id, e.kept, str(e)[:1000], traceback.format_exc()[-4000:],
                        seconds=time.monotonic() - t0, fatal=True)
    except Exception as e:
        return Proposed(slot, ctx.parent.id, None, f"{type(e).__name__}: {e}"[:500],
                        traceback.format_exc()[-4000:], seconds=time.monotonic() - t0)
    if child is not None and not child.operator:
        child.operator = op.name
    return Proposed(slot, ctx.parent.id, child,
                    reason="" if child is not None else (op.last_reason or "no proposal"),
                    seconds=time.monotonic() - t0)


class PostingWriter:
    """A proposer's `Writer` (evolve.operators.base): writes become inbox messages."""

    def __init__(self, post: Callable[[Any], None]):
        self._post = post

    def add_event(self, e: Event) -> None:
        self._post(EventPosted(e))

    def record_session(self, s: SessionRecord, steps: list[AgentStep]) -> None:
        self._post(SessionPosted(s, tuple(steps)))

    def activity(self, line: str, urgent: bool = False) -> None:
        self._post(Activity(line, urgent))


class RunView:
    """What a proposer's operator sees of the run: RunHandle's attributes, its own
    connections, and a writer that posts to the orchestrator."""

    def __init__(self, run: RunHandle, post: Callable[[Any], None]):
        self.paths, self.config, self.fingerprint = run.paths, run.config, run.fingerprint
        conn = sqlite3.connect(str(run.paths.db), timeout=30)
        self.store = LineageStore(sqlite_utils.Database(conn), run.paths.db)
        self.store.db.execute("PRAGMA busy_timeout = 30000")
        self.repo = KernelRepo.open(run.paths.kernels)
        self.writer = PostingWriter(post)

    @property
    def name(self) -> str:
        return self.paths.name

    def close(self) -> None:
        self.store.close()
        self.repo.repo.close()


class ProposerPool:
    def __init__(self, n: int, factory: Callable[[Any], Operator], run: RunHandle,
                 inbox: "queue.Queue[Any]"):
        self.n, self.factory, self.run, self.inbox = n, factory, run, inbox
        self._work: list[queue.Queue[VariationContext | None]] = [queue.Queue() for _ in range(n)]
        self.threads = [threading.Thread(target=self._main, args=(i,), daemon=True,
                                         name=f"evolve-proposer-{i}") for i in range(n)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def give(self, slot: int, ctx: VariationContext | None) -> None:
        self._work[slot].put(ctx)

    def stop(self) -> None:
        for q in self._work:
            q.put(None)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _main(self, slot: int) -> None:
        view = None
        try:
            view = RunView(self.run, self.inbox.put)
            op = self.factory(view)
            while True:
                self.inbox.put(Want(slot))
                ctx = self._work[slot].get()
                if ctx is None:
                    break
                self.inbox.put(propose(op, replace(ctx, run=view), slot))
        except BaseException as e:  # noqa: BLE001 - reported to the orchestrator
            self.inbox.put(Fatal(slot, f"{type(e).__name__}: {e}"[:500],
                                 traceback.format_exc()[-4000:]))
        finally:
            if view is not None:
                try:
                    view.close()
                except Exception:
                    pass
            self.inbox.put(Exited(slot))
