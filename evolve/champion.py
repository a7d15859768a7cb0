"""The champion rule of the loop: new bests, rematches, the noise gate and the pre-screen bar.

Who the champion is comes from the store (`evolve.store.champion_id`: the latest
`new_best` event, else an ok seed); this object decides when a recorded candidate takes
the title. Without a GPU a higher score crowns it at once (interpreter timing). With a
GPU a challenger whose recorded score beats the champion's is re-measured against it in
one interleaved rematch (a job on the executor; the orchestrator keeps proposing while
it runs, and at most one rematch is in flight: later challengers wait for its verdict).
Noise gate: when an earlier rematch measured the noise (CompareResult.noise of the latest
`rematch` event), a challenger within `1 + noise` of the champion's score is not rematched
(it would most likely lose; the run log says so).
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any, Callable

from evolve.evaluation import Evaluations
from evolve.records import Candidate
from evolve.run import RunHandle


class Champion:
    def __init__(self, run: RunHandle, evals: Evaluations, gpu: bool,
                 on_rematch_done: Callable[[Future], None], note: Callable[[str], None]):
        self.run, self.store, self.evals, self.gpu = run, run.store, evals, gpu
        self.on_rematch_done, self.note = on_rematch_done, note
        self.challenger: Candidate | None = None  # in a rematch against `defender`
        self.defender: Candidate | None = None
        self.waiting: list[Candidate] = []  # challengers that came during a rematch
        self._bar: tuple[int, dict[str, Any] | None] | None = None  # (champion id, prescreen)

    @property
    def busy(self) -> bool:
        return self.challenger is not None

    def last_noise(self) -> float | None:
        for e in reversed(self.store.events("rematch")):
            noise = json.loads(e.data_json).get("noise")
            if isinstance(noise, (int, float)) and noise >= 0:
                return float(noise)
        return None

    def consider(self, cand: Candidate) -> None:
        """A recorded candidate: crown it, start its rematch, or let it pass."""
        if not cand.ok or cand.score is None:
            return
        champ = self.store.best()
        if champ is None or champ.id == cand.id:
            self.declare(cand, "first correct candidate")
            return
        if champ.score is not None and cand.score <= champ.score:
            return
        if not self.gpu:
            was = "no score" if champ.score is None else f"{champ.score:.4g}"
            self.declare(cand, f"score {cand.score:.4g} > {was} (#{champ.id}); "
                         "interpreter timing, no rematch")
            return
        noise = self.last_noise()
        if noise is not None and champ.score is not None and \
                cand.score <= champ.score * (1 + noise):
            self.run.log(f"[rematch-skipped] #{cand.id} score {cand.score:.4g} is within the "
                         f"measured noise ({noise:.3g}) of champion #{champ.id} {champ.score:.4g}")
            return
        if self.busy:
            self.waiting.append(cand)
            return
        try:
            fut = self.evals.submit_rematch(cand, champ)
        except Exception as e:
            self.run.event("warning", f"rematch #{cand.id} vs #{champ.id} failed: {e}"[:500],
                           cand.id)
            return
        self.challenger, self.defender = cand, champ
        self.note(f"rematch #{cand.id} vs champion #{champ.id} started")
        fut.add_done_callback(self.on_rematch_done)

    def finish(self, fut: Future) -> None:
        """The rematch's job is done: its verdict, then the challengers that waited."""
        cand, champ = self.challenger, self.defender
        self.challenger = self.defender = None
        if cand is None or champ is None:
            return
        try:
            res = self.evals.rematch_result(cand, champ, fut.result())
        except Exception as e:
            self.run.event("warning", f"rematch #{cand.id} vs #{champ.id} failed: {e}"[:500],
                           cand.id)
        else:
            better = res.better and not res.failure
            verdict = "wins" if better else "does not beat the champion within noise"
            self.run.event("rematch", f"#{cand.id} vs #{champ.id}: {verdict}", cand.id,
                           {**res.to_dict(), "challenger": cand.id, "champion": champ.id})
            if better:
                self.declare(cand, f"won the rematch against #{champ.id} (ratio {res.ratio})")
        waiting, self.waiting = sorted(self.waiting, key=lambda c: -(c.score or 0.0)), []
        for c in waiting:
            self.consider(c)

    def declare(self, cand: Candidate, why: str) -> None:
        self.run.event("new_best", why, cand.id, {"score": cand.score})
        self.run.repo.set_best(cand.id)

    def prescreen(self) -> dict[str, Any] | None:
        """The quick pre-screen of a candidate job (GPU, default suite, a measured champion)."""
        cfg = self.run.config
        if not (self.gpu and cfg.prescreen and cfg.suite == "default"):
            return None
        champ = self.store.best()
        if champ is None:
            return None
        if self._bar is None or self._bar[0] != champ.id:
            ev = champ.evaluation
            speedups = {s.name: s.speedup for s in (ev.shapes if ev else []) if s.speedup}
            self._bar = (champ.id, {"suite": "quick", "champion_speedups": speedups,
                                    "ratio": float(cfg.prescreen_ratio)} if speedups else None)
        return self._bar[1]
