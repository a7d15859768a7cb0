"""Proposer threads: N variation sessions in flight, the orchestrator the only writer.

Each proposer thread owns one operator instance (`factory(view)`) and a `RunView` of the
run: its own SQLite connection (read-only use; sqlite3 objects never cross threads) and
its own git repository object. Every DB write an operator makes (`add_event`,
`record_session`, `add_agent_steps`, ...) is posted to the orchestrator's inbox and
applied there, in order, before the proposal that follows it.

Messages posted to the inbox (tuples, first item the kind):
    ("want", slot)                   the proposer is ready for a context
    ("write", method, args)          a LineageStore write to apply
    ("proposal", Outcome)            the result of one propose() call
    ("fatal", slot, message, trace)  the proposer broke (its operator could not be made)
    ("exit", slot)                   the thread ended
The orchestrator answers "want" with `pool.give(slot, Work)` or `pool.give(slot, None)`
(stop).
"""

from __future__ import annotations

import queue
import random
import sqlite3
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import sqlite_utils

from evolve.gitrepo import KernelRepo
from evolve.operators.base import Operator, Proposal, VariationContext
from evolve.records import Candidate
from evolve.run import RunHandle
from evolve.store import LineageStore

_WRITES = ("add_event", "record_session", "add_agent_steps", "add_candidate",
           "set_run_status", "upsert_workers")


@dataclass
class Work:
    parent: Candidate
    parent_source: str
    second: Candidate | None
    second_source: str | None
    rng_seed: int
    brief: dict[str, Any]


@dataclass
class Outcome:
    slot: int
    parent_id: int
    proposal: Proposal | None
    error: str | None = None  # "Type: message" of an exception propose() raised
    trace: str = ""
    reason: str = ""  # the operator's last_reason when it proposed nothing
    seconds: float = 0.0


class ProposerStore(LineageStore):
    """A LineageStore on its own connection whose writes are posted to the orchestrator."""

    def __init__(self, path: Any, post: Callable[..., None]):
        conn = sqlite3.connect(str(path), timeout=30)
        super().__init__(sqlite_utils.Database(conn), path)
        self.db.execute("PRAGMA busy_timeout = 30000")
        self._post = post
        for name in _WRITES:
            setattr(self, name, self._poster(name))

    def _poster(self, name: str) -> Callable[..., None]:
        def post(*args: Any) -> None:
            self._post(name, args)
        return post


class RunView:
    """What a proposer's operator sees of the run (RunHandle's attributes, read-only)."""

    def __init__(self, run: RunHandle, post: Callable[..., None]):
        self.paths, self.config, self.fingerprint = run.paths, run.config, run.fingerprint
        self.store = ProposerStore(run.paths.db, post)
        self.repo = KernelRepo.open(run.paths.kernels)

    @property
    def name(self) -> str:
        return self.paths.name

    def save_config(self) -> None:
        raise RuntimeError("a proposer cannot change the run configuration")

    def close(self) -> None:
        self.store.close()
        self.repo.repo.close()


class ProposerPool:
    def __init__(self, n: int, factory: Callable[[Any], Operator], run: RunHandle,
                 inbox: "queue.Queue[tuple]", evaluate: Callable[[str, str], Any]):
        self.n, self.factory, self.run, self.inbox, self.evaluate = n, factory, run, inbox, evaluate
        self._work: list[queue.Queue] = [queue.Queue() for _ in range(n)]
        self.threads = [threading.Thread(target=self._main, args=(i,), daemon=True,
                                         name=f"evolve-proposer-{i}") for i in range(n)]
        self.live = 0

    def start(self) -> None:
        for t in self.threads:
            t.start()
            self.live += 1

    def give(self, slot: int, work: Work | None) -> None:
        self._work[slot].put(work)

    def stop(self) -> None:
        for q in self._work:
            q.put(None)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _post(self, method: str, args: tuple) -> None:
        self.inbox.put(("write", method, args))

    def _main(self, slot: int) -> None:
        view = None
        try:
            view = RunView(self.run, self._post)
            op = self.factory(view)
            while True:
                self.inbox.put(("want", slot))
                work = self._work[slot].get()
                if work is None:
                    break
                self.inbox.put(("proposal", self._propose(slot, op, view, work)))
        except BaseException as e:  # noqa: BLE001 - reported to the orchestrator
            self.inbox.put(("fatal", slot, f"{type(e).__name__}: {e}"[:500],
                            traceback.format_exc()[-4000:]))
        finally:
            if view is not None:
                try:
                    view.close()
                except Exception:
                    pass
            self.inbox.put(("exit", slot))

    def _propose(self, slot: int, op: Operator, view: RunView, work: Work) -> Outcome:
        ctx = VariationContext(parent=work.parent, parent_source=work.parent_source,
                               second=work.second, second_source=work.second_source, run=view,
                               rng=random.Random(work.rng_seed), evaluate=self.evaluate,
                               brief=work.brief)
        t0 = time.monotonic()
        try:
            prop = op.propose(ctx)
        except Exception as e:  # an operator bug must not end the run
            return Outcome(slot, work.parent.id, None, f"{type(e).__name__}: {e}"[:500],
                           traceback.format_exc()[-4000:], seconds=time.monotonic() - t0)
        reason = "" if prop is not None else (getattr(op, "last_reason", "") or "no proposal")
        if prop is not None and not prop.operator:
            prop.operator = op.name
        return Outcome(slot, work.parent.id, prop, reason=reason,
                       seconds=time.monotonic() - t0)
