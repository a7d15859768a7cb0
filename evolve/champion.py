"""The champion rule of the loop: new bests, rematches, the noise gate and the pre-screen bar.

Without a GPU a higher score crowns a candidate at once (interpreter timing). With a GPU
a challenger whose recorded score beats the champion's is re-measured against it in one
interleaved rematch (a job on the executor; the orchestrator keeps proposing while it
runs, and at most one rematch is in flight: later challengers wait for its verdict).
Noise gate: when an earlier rematch measured the noise (CompareResult.noise of the latest
`rematch` event), a challenger whose recorded score is within `1 + noise` of the
champion's is not rematched at all (it would most likely lose; the run log says so).
"""

from __future__ import annotations

import json
from typing import Any

from evolve.records import Candidate


class ChampionMixin:
    """Mixed into EvolutionLoop (uses self.store, self.repo, self.evals, self.event, ...)."""

    def init_champion(self) -> None:
        self.rematch: tuple | None = None  # (challenger, champion, job, future) in flight
        self.rematch_waiting: list[Candidate] = []
        self._prescreen_cache: tuple[int, dict[str, Any] | None] | None = None

    def last_noise(self) -> float | None:
        events = self.store.events("rematch")
        for e in reversed(events):
            try:
                noise = json.loads(e.data_json or "{}").get("noise")
            except ValueError:
                continue
            if isinstance(noise, (int, float)) and noise >= 0:
                return float(noise)
        return None

    def update_champion(self, cand: Candidate, wait: bool = True) -> None:
        if not cand.ok or cand.score is None:
            return
        champ = self.store.best()  # falls back to the seed itself before any new_best event
        if champ is None or champ.id == cand.id:
            self.declare_best(cand, "first correct candidate")
            return
        if champ.score is not None and cand.score <= champ.score:
            return
        if not self.gpu:
            self.declare_best(cand, f"score {cand.score:.4g} > {champ.score:.4g} (#{champ.id}); "
                              "interpreter timing, no rematch")
            return
        noise = self.last_noise()
        if noise is not None and champ.score is not None and \
                cand.score <= champ.score * (1 + noise):
            self.log(f"[rematch-skipped] #{cand.id} score {cand.score:.4g} is within the "
                     f"measured noise ({noise:.3g}) of champion #{champ.id} {champ.score:.4g}")
            return
        if not wait:
            if self.rematch is not None:
                self.rematch_waiting.append(cand)
                return
            try:
                job, fut = self.evals.submit_rematch(cand.id, champ.id, self.repo.source_at(cand.id),
                                                     self.repo.source_at(champ.id))
            except Exception as e:
                self.event("warning", f"rematch #{cand.id} vs #{champ.id} failed: {e}"[:500],
                           cand.id)
                return
            self.rematch = (cand, champ, job, fut)
            self.progress.note(f"rematch #{cand.id} vs champion #{champ.id} started")
            fut.add_done_callback(lambda f: self.inbox.put(("rematch",)))
            return
        try:
            outcome = self.evals.rematch(cand.id, champ.id)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            self.event("warning", f"rematch #{cand.id} vs #{champ.id} failed: {e}"[:500], cand.id)
            return
        self._verdict(cand, champ, outcome)

    def on_rematch_done(self) -> None:
        if self.rematch is None:
            return
        cand, champ, job, fut = self.rematch
        self.rematch = None
        try:
            outcome = self.evals.finish_rematch(cand.id, champ.id, job, fut.result())
        except Exception as e:
            self.event("warning", f"rematch #{cand.id} vs #{champ.id} failed: {e}"[:500], cand.id)
        else:
            self._verdict(cand, champ, outcome)
        waiting = sorted(self.rematch_waiting, key=lambda c: -(c.score or 0.0))
        self.rematch_waiting = []
        for c in waiting:
            self.update_champion(c, wait=False)

    def _verdict(self, cand: Candidate, champ: Candidate, outcome: Any) -> None:
        verdict = "wins" if outcome.better else "does not beat the champion within noise"
        self.event("rematch", f"#{cand.id} vs #{champ.id}: {verdict}", cand.id, outcome.data)
        if outcome.better:
            self.declare_best(cand, f"won the rematch against #{champ.id} "
                              f"(ratio {outcome.data.get('ratio')})")

    def declare_best(self, cand: Candidate, why: str) -> None:
        self.event("new_best", why, cand.id, {"score": cand.score})
        self.repo.set_best(cand.id)

    def prescreen(self) -> dict[str, Any] | None:
        """The quick pre-screen of a candidate job (GPU, default suite, a measured champion)."""
        cfg = self.run.config
        if not (self.gpu and cfg.prescreen and cfg.suite == "default"):
            return None
        champ = self.store.best()
        if champ is None:
            return None
        if self._prescreen_cache is None or self._prescreen_cache[0] != champ.id:
            speedups = {m.shape: m.speedup for m in self.store.measurements(champ.id)
                        if m.speedup}
            pre = {"suite": "quick", "champion_speedups": speedups,
                   "ratio": float(cfg.prescreen_ratio)} if speedups else None
            self._prescreen_cache = (champ.id, pre)
        return self._prescreen_cache[1]
