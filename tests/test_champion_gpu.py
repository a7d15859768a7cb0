"""GPU: the champion rule's rematch gives the verdict the kernels deserve.

A run holds two real kernels, `seeds/gqa_naive.py` (about 0.55 of cuDNN on an H100) and
`seeds/gqa.py` (about 0.87). A higher recorded score alone never crowns a candidate: an
interleaved rematch on the quick suite decides. The strong seed challenging the naive
champion must win it, and the naive seed challenging the strong champion must lose it,
whatever scores were recorded for them (the recorded scores only trigger the rematch).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from evolve.config import RunConfig
from evolve.gitrepo import commit_message
from evolve.records import Candidate, Event, sha256_text
from evolve.run import RunHandle

pytestmark = pytest.mark.gpu

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
NAIVE, STRONG = (SEEDS / "gqa_naive.py").read_text(), (SEEDS / "gqa.py").read_text()


def _run(runs: Path, champion: str, challenger: str) -> RunHandle:
    """Candidate 0 (the champion) and 1 (the challenger, recorded with a higher score)."""
    cfg = RunConfig(name="champion", target="gqa", operator="offline", seed_file="seeds/gqa_naive.py",
                    suite="quick", rng_seed=0, gpu=True, rematch_rounds=3)
    run = RunHandle.create(runs, cfg, {"test": "champion rematch"})
    sha = None
    for cid, src, score in ((0, champion, 0.5), (1, challenger, 0.99)):
        sha = run.repo.commit_candidate(cid, src, [sha] if sha else [],
                                        commit_message(cid, f"kernel {cid}", {"Candidate-Id": cid}))
        run.store.add_candidate(Candidate(
            id=cid, parent_id=None if cid == 0 else 0, parent2_id=None,
            operator="seed" if cid == 0 else "offline", commit_sha=sha,
            source_sha256=sha256_text(src), status="ok", score=score, failure_class=None,
            failure_message=None, hypothesis=f"kernel {cid}", suite="quick", device="cuda",
            depth=cid))
    run.repo.set_best(0)
    run.store.add_event(Event(kind="new_best", candidate_id=0, message="seed"))
    return run


def _rematch(run: RunHandle, challenger_id: int) -> dict:
    """Offer the challenger to the loop's champion rule; return the rematch verdict."""
    from evolve.display import PlainProgress, ProgressState
    from evolve.loop import Budget, EvolutionLoop

    class NoOperator:
        def propose(self, ctx):  # noqa: ANN001, ANN201
            return None

    progress = PlainProgress(ProgressState(run.name, "gqa", "offline", None), Console(quiet=True))
    loop = EvolutionLoop(run, NoOperator(), progress, Budget(), gpu=True)
    loop.champion.consider(run.store.get_candidate(challenger_id))
    assert loop.champion.busy  # the rematch runs on the executor, like any job
    loop.drain()
    loop._shutdown(abandon=False)
    rematches = run.store.events("rematch")
    assert len(rematches) == 1 and rematches[0].candidate_id == challenger_id
    return json.loads(rematches[0].data_json)


def test_strong_challenger_wins_its_rematch(tmp_path):
    run = _run(tmp_path, champion=NAIVE, challenger=STRONG)
    verdict = _rematch(run, 1)
    assert verdict["champion"] == 0 and len(verdict["per_round"]) == 3
    assert verdict["better"] is True, verdict
    assert run.store.best().id == 1 and run.repo.best_sha() == run.store.get_candidate(1).commit_sha


def test_weak_challenger_loses_its_rematch_despite_its_recorded_score(tmp_path):
    run = _run(tmp_path, champion=STRONG, challenger=NAIVE)
    verdict = _rematch(run, 1)
    assert verdict["better"] is False and verdict["ratio"] < 0.9, verdict
    assert run.store.best().id == 0 and run.repo.best_sha() == run.store.get_candidate(0).commit_sha
