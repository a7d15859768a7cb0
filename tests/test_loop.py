"""The evolution loop on CPU: a real run (the shared fixture) and the loop's safety bounds."""

from __future__ import annotations

import dataclasses
import json
import random

from fixture_run import FIXTURE_CANDIDATES, copy_fixture_run
from lineage_checks import assert_consistent
from rich.console import Console

from evolve.config import read_run_toml
from evolve.loop import (
    MAX_CONSECUTIVE_DUPLICATES,
    MAX_CONSECUTIVE_NONE,
    MAX_CONSECUTIVE_OPERATOR_ERRORS,
    Budget,
    EvolutionLoop,
)
from evolve.records import Candidate
from evolve.display import PlainProgress, ProgressState
from evolve.run import RunHandle


def test_fixture_run_is_a_complete_lineage(fixture_run):
    run = assert_consistent(fixture_run)
    cands = run.store.candidates()
    assert len(cands) == FIXTURE_CANDIDATES
    assert all(c.operator == "offline" for c in cands[1:])
    for c in cands[1:]:
        ch = c.changes
        assert {"knobs", "recipes", "crossover_with", "kind"} <= set(ch) \
            <= {"knobs", "recipes", "crossover_with", "kind", "classes"}
        assert ch["knobs"] or ch["recipes"]
        assert c.variation_kind == ch["kind"]  # the bandit's record (operators/payoff.py)
        assert c.hypothesis and c.suite == "smoke" and c.device == "interpreter"
    kinds = [e.kind for e in run.store.events()]
    assert kinds[0] == "start" and "seed" in kinds and kinds[-1] == "stop"
    assert kinds.count("new_best") >= 1
    assert run.store.run().status == "stopped"  # the candidate budget was reached
    config, fingerprint = read_run_toml(fixture_run / "run.toml")
    assert config.operator == "offline" and config.suite == "smoke" and config.rng_seed == 7
    assert fingerprint["gpu_available"] is False and "torch" in fingerprint
    assert "OPENAI_API_KEY" not in (fixture_run / "run.toml").read_text()
    assert not (fixture_run / "run.lock").exists()
    assert "NOT GPU performance" in (fixture_run / "logs" / "start.stdout").read_text()


class _Scripted:
    """An operator that misbehaves in one chosen way, to check the loop's bounds."""

    def __init__(self, mode: str):
        self.name, self.mode, self.calls, self.last_reason = "scripted", mode, 0, ""

    def propose(self, ctx):
        self.calls += 1
        if self.mode == "none":
            return None
        if self.mode == "raise":
            raise RuntimeError("operator bug")
        return Candidate.proposed(ctx.parent.id, ctx.parent_source, "same again", {}, "scripted")


def _loop(run_dir, mode):
    run = RunHandle.open(run_dir)
    op = _Scripted(mode)
    state = ProgressState(run.name, "gqa", "scripted", 99)
    loop = EvolutionLoop(run, op, PlainProgress(state, Console(quiet=True)), Budget(99))
    loop.rng = random.Random(0)
    return run, op, loop.run_loop()


def test_loop_ends_cleanly_on_misbehaving_operators(fixture_run, tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    run, op, out = _loop(copy_fixture_run(base, "nones"), "none")
    assert out.status == "finished" and op.calls == MAX_CONSECUTIVE_NONE
    assert "produced nothing" in out.reason

    run, op, out = _loop(copy_fixture_run(base, "dups"), "dup")
    assert out.status == "finished" and "duplicate" in out.reason
    assert len(run.store.events("duplicate")) == MAX_CONSECUTIVE_DUPLICATES
    assert len(run.store.candidates()) == FIXTURE_CANDIDATES  # nothing evaluated twice

    run, op, out = _loop(copy_fixture_run(base, "errors"), "raise")
    assert out.status == "finished" and op.calls == MAX_CONSECUTIVE_OPERATOR_ERRORS
    errs = run.store.events("operator_error")
    assert len(errs) == MAX_CONSECUTIVE_OPERATOR_ERRORS
    assert "RuntimeError: operator bug" in errs[0].message


SLOWED = """

_attention_once = attention


def attention(q, k, v, *, causal=False, sm_scale=None):  # twice the work: a known loser
    _attention_once(q, k, v, causal=causal, sm_scale=sm_scale)
    return _attention_once(q, k, v, causal=causal, sm_scale=sm_scale)
"""


def test_gpu_champion_rule_runs_a_real_rematch(fixture_run, tmp_path_factory):
    """With a GPU, a higher recorded score alone does not crown a candidate: an interleaved
    rematch against the champion decides. Here the real compare_candidates runs in the
    interpreter (the loop is told gpu=True) with a challenger that does the champion's work
    twice: whatever score it had recorded, it must lose."""
    run = RunHandle.open(copy_fixture_run(tmp_path_factory.getbasetemp(), "rematch"))
    run.config.rematch_rounds = 2
    champ = run.store.best()
    cid = run.store.next_candidate_id()
    src = run.repo.source_at(champ.commit_sha) + SLOWED
    challenger = run.repo.commit(dataclasses.replace(
        Candidate.proposed(champ.id, src, "the champion, twice", {}, "test"),
        score=champ.score * 2, status="ok", suite=champ.suite, device=champ.device)
        .committed(cid, champ.depth + 1), [champ.commit_sha])
    run.store.add_candidate(challenger)
    state = ProgressState(run.name, "gqa", "offline", None)
    loop = EvolutionLoop(run, _Scripted("none"), PlainProgress(state, Console(quiet=True)),
                         Budget(), gpu=True)
    loop.champion.consider(challenger)
    assert loop.champion.busy  # the rematch runs on the executor, like any job
    loop.drain()
    loop._shutdown(abandon=False)
    rematches = run.store.events("rematch")
    assert len(rematches) == 1 and rematches[0].candidate_id == cid
    verdict = json.loads(rematches[0].data_json)
    assert verdict["champion"] == champ.id and len(verdict["per_round"]) == 2
    assert verdict["better"] is False and verdict["ratio"] < 0.8, verdict
    assert run.store.best().id == champ.id and run.repo.best_sha() == champ.commit_sha


class _LosingExecutor:
    """An executor whose every job is lost (as a Ray actor that dies twice would be)."""

    name, slots = "losing", []
    capacity = 1

    def __init__(self) -> None:
        self.jobs = []

    def submit(self, job):
        from concurrent.futures import Future

        from evolve.executors.base import JobResult
        self.jobs.append(job)
        fut = Future()
        fut.set_result(JobResult.failed(job, "w0", None, lost="actor died (twice)"))
        return fut

    def workers(self):
        return []

    def shutdown(self, wait=True):
        pass


def test_an_internal_rejection_is_evaluated_once_more_then_recorded(fixture_run,
                                                                   tmp_path_factory):
    from evolve.evaluation import Evaluations

    run = RunHandle.open(copy_fixture_run(tmp_path_factory.getbasetemp(), "internal"))
    ex = _LosingExecutor()
    state = ProgressState(run.name, "gqa", "scripted", None)
    loop = EvolutionLoop(run, _Scripted("none"), PlainProgress(state, Console(quiet=True)),
                         Budget(), Evaluations(run, ex))
    child = Candidate.proposed(0, run.repo.source_at(0) + "\n# changed\n", "h", {}, "scripted")
    loop.next_cid = run.store.next_candidate_id()
    loop.ready.append(child)
    loop._dispatch()
    loop.drain()
    cand = run.store.get_candidate(loop.next_cid - 1)
    assert [j.job_id.rsplit("-", 1)[0] for j in ex.jobs] == [f"cand-{cand.id}"] * 2
    assert cand.status == "rejected" and cand.failure_class == "internal"
    assert "worker lost: actor died (twice)" in cand.failure_message
    warnings = [e for e in run.store.events("warning") if e.candidate_id == cand.id]
    assert len(warnings) == 1 and "evaluating again" in warnings[0].message
    assert "[evolve] worker lost" in run.paths.eval_log(cand.id).read_text()


def test_a_stop_keeps_agent_work_that_arrives_late_for_resume(fixture_run, tmp_path_factory):
    """Children of agent sessions (paid: they carry a session) that are not evaluated when
    the run stops are committed; the next start's reconcile evaluates them. An offline
    child is dropped (free to propose again), and a duplicate is kept once."""
    from evolve.proposers import Proposed

    run = RunHandle.open(copy_fixture_run(tmp_path_factory.getbasetemp(), "late"))
    state = ProgressState(run.name, "gqa", "agent", None)
    loop = EvolutionLoop(run, _Scripted("none"), PlainProgress(state, Console(quiet=True)),
                         Budget())
    loop.next_cid = run.store.next_candidate_id()
    parent = run.store.best()
    src = run.repo.source_at(parent.commit_sha)

    def child(tag: str, session: str | None):
        return Candidate.proposed(parent.id, src + f"\n# {tag}\n", tag, {}, "agent",
                                  session_id=session)
    loop.ready.append(child("ready", "s-1"))
    loop.inbox.put(Proposed(0, parent.id, child("late", "s-2")))
    loop.inbox.put(Proposed(0, parent.id, child("late", "s-3")))  # the same source again
    loop.inbox.put(Proposed(0, parent.id, child("offline", None)))
    before = set(run.repo.candidate_refs())
    loop._shutdown(abandon=True)
    new = sorted(set(run.repo.candidate_refs()) - before)
    assert [run.repo.candidate_at(c).hypothesis for c in new] == ["ready", "late"]
    assert all(run.store.get_candidate(c) is None for c in new)  # for the next reconcile
    kept = [e for e in run.store.events("warning") if "`evolve resume` evaluates it" in e.message]
    assert [e.candidate_id for e in kept] == new


class _UnscoredExecutor(_LosingExecutor):
    """Every evaluation comes back ok but without a score (no baseline timed any shape, as
    on a GPU where each baseline ran out of memory)."""

    name = "unscored"

    def submit(self, job):
        from concurrent.futures import Future

        from evaluator import EvalResult
        from evolve.executors.base import JobResult
        self.jobs.append(job)
        fut = Future()
        res = EvalResult(status="ok", target="gqa", suite="smoke", score=None, device="cuda")
        fut.set_result(JobResult(job.job_id, job.kind, "w0", 0, res.to_dict(), log="baseline refused"))
        return fut


def test_an_unscored_ok_result_is_recorded_and_the_run_goes_on(fixture_run, tmp_path_factory):
    """H100, decode default suite (2026-12-06): an ok seed without a score stopped the run
    with a TypeError while printing its progress line."""
    from evolve.evaluation import Evaluations

    run = RunHandle.open(copy_fixture_run(tmp_path_factory.getbasetemp(), "unscored"))
    best = run.store.best()
    state = ProgressState(run.name, "gqa", "scripted", None)
    loop = EvolutionLoop(run, _Scripted("none"), PlainProgress(state, Console(quiet=True)),
                         Budget(), Evaluations(run, _UnscoredExecutor()))
    child = Candidate.proposed(0, run.repo.source_at(0) + "\n# unscored\n", "h", {}, "scripted")
    loop.next_cid = run.store.next_candidate_id()
    loop.ready.append(child)
    loop._dispatch()
    loop.drain()
    cand = run.store.get_candidate(loop.next_cid - 1)
    assert cand.status == "ok" and cand.score is None
    assert run.store.best().id == best.id  # no score: it cannot take the champion's place
    assert state.last.startswith(f"#{cand.id} ok no score (no baseline time)"), state.last
