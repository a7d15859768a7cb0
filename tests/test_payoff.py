"""Learning what pays: trials from recorded candidates, the Thompson-sampling bandit, the
"what has paid off" table, and the offline operator guided by a scripted history."""

from __future__ import annotations

import json
import random
from collections import Counter
from types import SimpleNamespace

from evaluator import EvalResult, Failure, ShapeResult
from evolve.operators.base import VariationContext
from evolve.operators.config_edit import read_config, rewrite_config
from evolve.operators.offline import OfflineOperator, config_key
from evolve.operators.payoff import (
    FAIL_GAIN,
    Bandit,
    Trial,
    dead_kinds,
    kind_of,
    payoff_rows,
    trials,
    what_paid_off,
)
from evolve.paths import SEEDS_DIR
from evolve.records import Candidate, RunRecord, sha256_text
from evolve.store import LineageStore

NAIVE = (SEEDS_DIR / "gqa_naive.py").read_text()


def _shape(name: str, x: float) -> ShapeResult:
    return ShapeResult(name=name, B=1, Hq=8, Hkv=2, S=1024, D=128, causal=False,
                       dtype="bfloat16", speedup=x)


def _rec(cid, parent, kind, score=None, failure=None, shapes=(), source=""):
    res = EvalResult(status="rejected" if failure else "ok", target="gqa", suite="default",
                     score=score, failure=Failure(*failure) if failure else None,
                     shapes=[_shape(n, x) for n, x in shapes])
    c = Candidate.proposed(parent, source, f"try {kind}", {"kind": kind}, "offline",
                           variation_kind=kind) if parent is not None else \
        Candidate(parent_id=None, operator="seed", source=source)
    return c.committed(cid, 0 if parent is None else 1).with_result(res)


def test_trials_gain_slow_evidence_and_failures():
    cands = [_rec(0, None, "", score=0.5, shapes=[("a", 0.5), ("b", 0.5)]),
             _rec(1, 0, "knob:X", score=0.55),
             _rec(2, 0, "knob:X", score=0.45),
             # slow: measured on the quick suite at 0.4 where the parent has 0.5
             _rec(3, 0, "recipe:r", failure=("slow", "quick pre-screen: 0.40 < 0.9 x champion "
                                                     "0.50"), shapes=[("a", 0.4), ("b", 0.4)]),
             # slow with no common shapes: the ratio in the message
             _rec(4, 0, "recipe:r", failure=("slow", "quick pre-screen: 0.30 < 0.9 x champion "
                                                     "0.60")),
             _rec(5, 0, "recipe:r", failure=("compile", "boom"))]
    ts = trials(cands)
    assert [t.kind for t in ts] == ["knob:X", "knob:X", "recipe:r", "recipe:r", "recipe:r"]
    assert [t.outcome for t in ts] == ["better", "worse", "slow", "slow", "failed"]
    assert abs(ts[0].gain - 0.0953) < 1e-3 and abs(ts[2].gain - (-0.2231)) < 1e-3
    assert abs(ts[3].gain - (-0.6931)) < 1e-3 and ts[4].gain is None
    assert ts[4].reward == FAIL_GAIN
    rows = {r.kind: r for r in payoff_rows(cands)}
    assert rows["knob:X"].tries == 2 and rows["knob:X"].better == 1
    assert rows["recipe:r"].slow == 2 and rows["recipe:r"].failed == 1
    table = what_paid_off(cands)
    assert "what has paid off in this run" in table
    assert all(len(line) <= 80 for line in table.splitlines())
    assert table.index("knob:X") < table.index("recipe:r")  # best mean gain first
    assert what_paid_off([cands[0]]) == ""


def test_kind_of_older_rows_derives_from_changes():
    def old(changes, op="offline"):
        return Candidate(parent_id=0, operator=op, changes_json=json.dumps(changes))
    assert kind_of(old({"knobs": {"BLOCK_N": {}}, "recipes": []})) == "knob:BLOCK_N"
    assert kind_of(old({"knobs": {"a": {}, "b": {}}, "recipes": []})) == "knobs:pair"
    assert kind_of(old({"knobs": {}, "recipes": ["fold_scale_exp2"]})) == \
        "recipe:fold_scale_exp2"
    assert kind_of(old({"knobs": {"a": {}}, "crossover_with": 3})) == "crossover:mix"
    assert kind_of(old({}, op="agent")) == "agent"


def test_bandit_prefers_the_kind_that_paid():
    history = [Trial("knob:A", "better", 0.05)] * 6 + [Trial("knob:B", "worse", -0.03)] * 6 \
        + [Trial("recipe:C", "failed", None)] * 3
    bandit = Bandit(history)
    rng = random.Random(0)
    picks = Counter(bandit.choose(["knob:A", "knob:B", "recipe:C", "knob:new"], rng)
                    for _ in range(400))
    assert picks["knob:A"] > 0.7 * 400
    assert picks["knob:B"] < picks["knob:new"]  # an untried kind still gets explored
    assert picks["knob:new"] > 0


def _scripted_run(tmp_path):
    """A run where changing num_warps paid (+8 %) three times, BLOCK_N lost, a recipe failed."""
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="default", status="running"))
    sources = {0: NAIVE}
    store.add_candidate(_rec(0, None, "", score=0.5, source=NAIVE))
    cid = 1
    for cls in ("D64_NC", "D64_C", "NC"):  # the fourth class ("C") is left for the operator
        sources[cid] = rewrite_config(NAIVE, {(cls, "num_warps"): 8})
        store.add_candidate(_rec(cid, 0, "knob:num_warps:up", score=0.54, source=sources[cid]))
        cid += 1
    for cls, v in (("D64_NC", 32), ("NC", 128), ("C", 32)):
        sources[cid] = rewrite_config(NAIVE, {(cls, "BLOCK_N"): v})
        store.add_candidate(_rec(cid, 0, "knob:BLOCK_N:" + ("up" if v > 64 else "down"),
                                 score=0.45, source=sources[cid]))
        cid += 1
    store.add_candidate(_rec(cid, 0, "recipe:fold_scale_exp2", failure=("compile", "x"),
                             source=NAIVE + "# folded\n"))
    sources[cid] = NAIVE + "# folded\n"
    run = SimpleNamespace(store=store, repo=SimpleNamespace(source_at=sources.__getitem__))
    return run, store, sources


def test_offline_operator_follows_the_payoffs_and_never_reproposes(tmp_path):
    run, store, sources = _scripted_run(tmp_path)
    parent = store.get_candidate(0)
    measured = {config_key(s) for s in sources.values()}
    kinds = Counter()
    for seed in range(40):
        op = OfflineOperator()  # a fresh operator: only the run's records guide it
        ctx = VariationContext(parent=parent, parent_source=NAIVE, second=None,
                               second_source=None, run=run, rng=random.Random(seed),
                               evaluate=lambda s, suite: None)
        p = op.propose(ctx)
        assert p is not None and config_key(p.source) not in measured
        assert p.variation_kind == p.changes["kind"]
        kinds[p.variation_kind] += 1
        if p.variation_kind == "knob:num_warps:up":  # the one unmeasured num_warps move left
            assert read_config(p.source)["C"]["num_warps"] == 8
    # 23 kinds are open to the naive seed here; drawn alike, each would get under 2 of the 40
    (top, n_top), (_, n_next) = kinds.most_common(2)
    assert top == "knob:num_warps:up" and n_top >= 0.35 * 40 and n_top >= 3 * n_next, kinds
    assert kinds["knob:BLOCK_N:up"] + kinds["knob:BLOCK_N:down"] < kinds["knob:num_warps:up"] / 3


def test_one_operator_exhausts_a_kind_then_moves_on(tmp_path):
    run, store, sources = _scripted_run(tmp_path)
    op = OfflineOperator()
    ctx = VariationContext(parent=store.get_candidate(0), parent_source=NAIVE, second=None,
                           second_source=None, run=run, rng=random.Random(0),
                           evaluate=lambda s, suite: None)
    seen = {config_key(s) for s in sources.values()}
    for _ in range(12):
        p = op.propose(ctx)
        assert p is not None and config_key(p.source) not in seen
        assert not store.has_source(sha256_text(p.source))
        seen.add(config_key(p.source))


def test_supervisor_plateau_carries_the_payoff_table(tmp_path):
    from evolve.agent import supervisor

    run, store, _ = _scripted_run(tmp_path)
    plateau = supervisor.detect(store, stall_limit=2)
    assert plateau is not None
    assert plateau.payoffs == what_paid_off(store.candidates())
    lines = plateau.payoffs.splitlines()
    assert lines[0].startswith("what has paid off in this run")
    assert lines[3].split()[:3] == ["knob:num_warps:up", "3", "3"]  # best mean gain first
    assert any(ln.split()[:2] == ["recipe:fold_scale_exp2", "1"] for ln in lines)


def test_run_report_of_the_fixture_run(fixture_run):
    """benchmarks/gpu/run_report.py: the payoff table and the per-class tables of a run."""
    import sys

    sys.path.insert(0, str(SEEDS_DIR.parent / "benchmarks" / "gpu"))
    import run_report

    text = run_report.report(fixture_run)
    assert "what has paid off in this run" in text
    assert "best ratio per class of the seed" in text and "D64_C" in text  # smoke shapes: D=64
    assert "steady best per class" in text and "every class at its best steady settings" in text


def test_variation_kind_column_is_added_to_an_older_run(tmp_path):
    """A lineage.db made before `variation_kind` existed: rows read back with "", and the
    first new row adds the column (sqlite-utils alter on insert)."""
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="smoke", status="running"))
    store.db.execute("ALTER TABLE candidates DROP COLUMN variation_kind")
    store.add_candidate(_rec(0, None, "", score=0.5, source=NAIVE))
    assert "variation_kind" in {c.name for c in store.db.table("candidates").columns}
    store.db.execute("ALTER TABLE candidates DROP COLUMN variation_kind")
    assert store.get_candidate(0).variation_kind == ""
    store.add_candidate(_rec(1, 0, "knob:BLOCK_N", score=0.6, source=NAIVE + "#\n"))
    assert store.get_candidate(1).variation_kind == "knob:BLOCK_N"
    assert [t.kind for t in trials(store.candidates())] == ["knob:BLOCK_N"]


def test_the_agent_brief_shows_the_same_table_and_no_gains_on_the_interpreter(tmp_path):
    from evolve.agent import prompts, supervisor

    run, store, _ = _scripted_run(tmp_path)
    gpu = prompts._payoffs(store, None, timed=True)
    assert gpu.startswith("## What has paid off in this run")
    assert what_paid_off(store.candidates()) in gpu and "+8.0 %" in gpu
    cpu = prompts._payoffs(store, None, timed=False)
    assert "knob:num_warps" in cpu and "%" not in cpu and "not performance numbers" in cpu
    # on a plateau the supervisor note carries the table instead (not twice)
    plateau = supervisor.detect(store, stall_limit=2, timed=True)
    assert prompts._payoffs(store, plateau, timed=True) == ""
    note = prompts._plateau_note(prompts.Prompts.load(None).supervisor, plateau)
    assert plateau.payoffs in note and "{payoffs}" in prompts.Prompts.load(None).brief


def test_a_kind_that_always_failed_is_no_longer_proposed(tmp_path):
    """H100, decode_naive (2026-12-06): `num_ctas_2` failed 9 of 9 tries; after three
    failures and no try that ran, the operator stops drawing it, and the report says so."""
    history = [Trial("recipe:C", "failed", None)] * 2 + [Trial("knob:B", "worse", -0.4)] * 4
    assert dead_kinds(history) == set()
    history += [Trial("recipe:C", "failed", None), Trial("recipe:D", "failed", None),
                Trial("recipe:D", "better", 0.01), Trial("recipe:D", "failed", None)]
    assert dead_kinds(history) == {"recipe:C"}  # D ran once: not dead
    run, store, sources = _scripted_run(tmp_path)
    for i in range(2):  # fold_scale_exp2 has failed once; two more failures make it dead
        cid = store.next_candidate_id()
        src = NAIVE + f"# folded {i}\n"
        store.add_candidate(_rec(cid, 0, "recipe:fold_scale_exp2", failure=("runtime", "x"), source=src))
        sources[cid] = src
    parent = store.get_candidate(0)
    kinds = Counter()
    for seed in range(40):
        ctx = VariationContext(parent=parent, parent_source=NAIVE, second=None,
                               second_source=None, run=run, rng=random.Random(seed),
                               evaluate=lambda s, suite: None)
        p = OfflineOperator().propose(ctx)
        kinds[p.variation_kind if p else None] += 1
    assert kinds["recipe:fold_scale_exp2"] == 0 and None not in kinds, kinds
    assert "no longer proposed (failed every time, 3+ tries): recipe:fold_scale_exp2" \
        in what_paid_off(store.candidates())


def test_a_knob_raised_and_lowered_are_separate_bets(tmp_path):
    """H100, naive run (2026-12-06): the one BLOCK_M try, 64 -> 32 at D64_C, was slow, and
    the run never tried BLOCK_M 64 -> 128 at D=128 (where seeds/gqa.py runs 128). Raising
    and lowering a knob are now two kinds: losses going down leave going up untouched,
    and an "up" move only ever raises the knob (one class at a time)."""
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="default", status="running"))
    sources = {0: NAIVE}
    store.add_candidate(_rec(0, None, "", score=0.5, source=NAIVE))
    for cid, cls in enumerate(("D64_C", "D64_NC", "NC"), start=1):  # down lost 30 %, 3 times
        sources[cid] = rewrite_config(NAIVE, {(cls, "BLOCK_M"): 32})
        store.add_candidate(_rec(cid, 0, "knob:BLOCK_M:down", score=0.35, source=sources[cid]))
    run = SimpleNamespace(store=store, repo=SimpleNamespace(source_at=sources.__getitem__))
    parent, base = store.get_candidate(0), read_config(NAIVE)
    kinds = Counter()
    for seed in range(60):
        ctx = VariationContext(parent=parent, parent_source=NAIVE, second=None,
                               second_source=None, run=run, rng=random.Random(seed),
                               evaluate=lambda s, suite: None)
        p = OfflineOperator().propose(ctx)
        kinds[p.variation_kind] += 1
        if p.variation_kind.startswith("knob:BLOCK_M:"):
            cfg = read_config(p.source)
            moved = {c: (base[c]["BLOCK_M"], cfg[c]["BLOCK_M"]) for c in cfg
                     if cfg[c]["BLOCK_M"] != base[c]["BLOCK_M"]}
            assert len(moved) == 1, moved
            (old, new), = moved.values()
            assert (new > old) == p.variation_kind.endswith(":up"), (p.variation_kind, moved)
    assert kinds["knob:BLOCK_M:down"] == 0 and kinds["knob:BLOCK_M:up"] >= 1, kinds


def test_a_prior_from_an_earlier_measurement_leads_until_the_run_says_otherwise():
    """A kind with a measured prior (+9 % log gain) is drawn first among untried kinds; once
    the run has tried it and it lost, in-run evidence outweighs the prior."""
    kinds = ["recipe:paid", "knob:a", "knob:b", "knob:c", "knob:d"]
    rng = random.Random(1)
    fresh = Bandit([], priors={"recipe:paid": 0.09})
    picks = Counter(fresh.choose(kinds, rng) for _ in range(400))
    assert picks["recipe:paid"] > 0.75 * 400, picks
    assert Bandit([], priors={"recipe:paid": 0.09}).posterior("knob:a")[0] == 0.0
    lost = Bandit([Trial("recipe:paid", "worse", -0.05)] * 4, priors={"recipe:paid": 0.09})
    assert lost.posterior("recipe:paid")[0] < 0
    picks = Counter(lost.choose(kinds, rng) for _ in range(400))
    assert picks["recipe:paid"] < 0.05 * 400, picks


def test_a_new_naive_run_tries_the_recipes_that_paid_before_its_knobs(tmp_path):
    """H100, recipe_bench (2026-12-06): fold_scale_exp2 +9.4 %, tma_store_o +4.6 %,
    swap_grid_order +4.2 %, split_causal_loop +3.4 % against seeds/gqa_naive.py; H100
    (2026-12-07): host_tma_kv +3.5 % against six of them stacked. A fresh gqa run from that
    seed proposes those first (Recipe.paid as the bandit's prior); a run of a target
    without such measurements draws among all its kinds alike."""
    from evolve.operators.offline import recipe_priors
    from evolve.operators.recipes import RECIPES

    paid = {f"recipe:{n}" for n, r in RECIPES.items() if "gqa" in r.paid}
    assert paid == {"recipe:fold_scale_exp2", "recipe:tma_store_o", "recipe:swap_grid_order",
                    "recipe:split_causal_loop", "recipe:host_tma_kv"}
    assert recipe_priors("decode") == {} and set(recipe_priors("gqa")) == paid
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="default", status="running"))
    store.add_candidate(_rec(0, None, "", score=0.5, source=NAIVE))
    firsts = {}
    for target in ("gqa", "other"):
        run = SimpleNamespace(store=store, repo=SimpleNamespace(source_at={0: NAIVE}.__getitem__),
                              config=SimpleNamespace(target=target))
        kinds = Counter()
        for seed in range(40):
            ctx = VariationContext(parent=store.get_candidate(0), parent_source=NAIVE,
                                   second=None, second_source=None, run=run,
                                   rng=random.Random(seed), evaluate=lambda s, suite: None)
            kinds[OfflineOperator().propose(ctx).variation_kind] += 1
        firsts[target] = sum(kinds[k] for k in paid)
    # 5 of the 21 kinds open to the naive seed have a prior: drawn alike, they would get 1/4
    assert firsts["gqa"] >= 0.85 * 40, firsts
    assert firsts["other"] <= 0.5 * 40, firsts


def test_a_knob_lost_on_other_code_is_tried_again_on_this_code(tmp_path):
    """H100, naive run (2026-12-06): BLOCK_M 64 -> 128 at D=128 was slow on the naive seed
    (it spills there) and was not tried again once the recipes changed the code. A knob's
    losses now count only on the code they were measured on: from the seed the lost move is
    rarely drawn, from a child with other code (a recipe applied) it is drawn like any
    untried knob; a recipe's losses count everywhere."""
    from evolve.operators.recipes import RECIPES

    folded = RECIPES["fold_scale_exp2"].apply(NAIVE)
    assert folded is not None
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="default", status="running"))
    sources = {0: NAIVE, 1: folded}
    store.add_candidate(_rec(0, None, "", score=0.5, source=NAIVE))
    store.add_candidate(_rec(1, 0, "recipe:fold_scale_exp2", score=0.55, source=folded))
    cid = 2
    for cls in ("NC", "C", "D64_NC"):  # 64 -> 128 on the seed's code: 30 % slower, 3 times
        sources[cid] = rewrite_config(NAIVE, {(cls, "BLOCK_M"): 128})
        store.add_candidate(_rec(cid, 0, "knob:BLOCK_M:up", score=0.35, source=sources[cid]))
        cid += 1
    for _ in range(3):  # a recipe that lost on the seed's code
        sources[cid] = NAIVE + f"# variant {cid}\n"
        store.add_candidate(_rec(cid, 0, "recipe:swap_grid_order", score=0.35,
                                 source=sources[cid]))
        cid += 1
    run = SimpleNamespace(store=store, repo=SimpleNamespace(source_at=sources.__getitem__))
    history = store.candidates()
    mean = {}
    for pid, src in ((0, NAIVE), (1, folded)):
        ctx = VariationContext(parent=store.get_candidate(pid), parent_source=src, second=None,
                               second_source=None, run=run, rng=random.Random(0),
                               evaluate=lambda s, suite: None)
        op = OfflineOperator()
        bandit = op.bandit(ctx, history)
        mean[pid] = {k: bandit.posterior(k)[0] for k in ("knob:BLOCK_M:up",
                                                        "recipe:swap_grid_order")}
        ups = 0
        for seed in range(12):  # the seed's code never draws the lost move
            p = op.propose(VariationContext(**{**vars(ctx), "rng": random.Random(seed)}))
            ups += p is not None and p.variation_kind == "knob:BLOCK_M:up"
        mean[pid]["proposed"] = ups
    assert mean[0]["knob:BLOCK_M:up"] < -0.2 and mean[0]["proposed"] == 0, mean
    assert mean[1]["knob:BLOCK_M:up"] == 0.0, mean  # untried on this code, no prior
    assert mean[0]["recipe:swap_grid_order"] < -0.2 and mean[1]["recipe:swap_grid_order"] < -0.2
