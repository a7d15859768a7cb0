"""The offline operator: CONFIG edits, mutation, crossover and the source recipes."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from evolve.operators.base import VariationContext
from evolve.operators.config_edit import (
    ConfigEditError,
    add_class,
    add_knob,
    read_config,
    read_search_space,
    rewrite_config,
)
from evolve.operators.offline import OfflineOperator, config_key, pick_class, structure_key
from evolve.operators.recipes import RECIPES
from evolve.paths import SEEDS_DIR
from evolve.records import Candidate, RunRecord
from evolve.records import sha256_text
from evolve.store import LineageStore

NAIVE = (SEEDS_DIR / "gqa_naive.py").read_text()
STRONG = (SEEDS_DIR / "gqa.py").read_text()
STRONG_CFG = read_config(STRONG)


def _cand(cid: int, score: float = 1.0) -> Candidate:
    return Candidate(id=cid, parent_id=None, parent2_id=None, operator="seed", commit_sha="0" * 40,
                     source_sha256="", status="ok", score=score, failure_class=None,
                     failure_message=None, hypothesis="")


def _load(source: str, tmp_path: Path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"cand_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _max_error(mod) -> float:
    """Largest |out - fp32 reference| over GQA shapes, causal and not (interpreter)."""
    torch.manual_seed(0)
    worst = 0.0
    for causal in (False, True):
        for S in (40, 96):
            q = torch.randn(1, 4, S, 32, dtype=torch.float16)
            k = torch.randn(1, 2, S, 32, dtype=torch.float16)
            v = torch.randn(1, 2, S, 32, dtype=torch.float16)
            out = mod.attention(q, k, v, causal=causal, sm_scale=0.3)
            ref = torch.nn.functional.scaled_dot_product_attention(
                q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
                is_causal=causal, scale=0.3)
            err = (out.float() - ref).abs().max().item()
            worst = math.inf if math.isnan(err) else max(worst, err)  # max() drops a NaN
    return worst


# --- CONFIG edits -------------------------------------------------------------

def test_config_read_and_rewrite_only_touches_the_values():
    flat = 'CONFIG = {\n    "BLOCK_N": 64,\n    "num_warps": 4,\n}\nx = 1\n'
    out = rewrite_config(flat, {"BLOCK_N": 128, "num_warps": 8})
    assert read_config(out) == {"BLOCK_N": 128, "num_warps": 8}
    assert out.replace("128", "64").replace("8", "4") == flat
    # a classed CONFIG: (class, knob) keys, one value changed in place
    cfg = read_config(NAIVE)
    out = rewrite_config(NAIVE, {("NC", "BLOCK_N"): 128, ("D64_C", "num_warps"): 8})
    want = {c: dict(v) for c, v in cfg.items()}
    want["NC"]["BLOCK_N"], want["D64_C"]["num_warps"] = 128, 8
    assert read_config(out) == want
    changed = [(a, b) for a, b in zip(NAIVE.splitlines(), out.splitlines()) if a != b]
    assert len(changed) == 2 and len(out.splitlines()) == len(NAIVE.splitlines())
    with pytest.raises(ConfigEditError):
        rewrite_config(NAIVE, {"NOT_A_KNOB": 1})
    with pytest.raises(ConfigEditError):
        rewrite_config(NAIVE, {"NC": 1})  # a class is not a knob
    with pytest.raises(ConfigEditError):
        rewrite_config("x = 1\n", {"BLOCK_N": 1})
    assert read_config("CONFIG = dict(a=1)\n") == {}
    # ast columns are UTF-8 bytes: a non-ASCII key before the value must not shift the splice
    out = rewrite_config('CONFIG = {"é": 1, "B": 2}\n', {"B": 3})
    assert out == 'CONFIG = {"é": 1, "B": 3}\n'


def test_add_knob_to_every_class_and_the_space():
    out = add_knob(STRONG, "MAXNREG", 0, [0, 168])
    for cls, knobs in read_config(out).items():
        assert knobs["MAXNREG"] == 0 and read_search_space(out)[cls]["MAXNREG"] == [0, 168]
    out = add_knob(NAIVE, "MAXNREG", 0, [0, 168])
    assert read_search_space(out)["MAXNREG"] == [0, 168]
    with pytest.raises(ConfigEditError):
        add_knob(out, "MAXNREG", 0, [0])


def test_mutation_moves_knobs_of_one_class_within_its_search_space():
    op = OfflineOperator()
    rng = random.Random(0)
    space = read_search_space(STRONG)
    for knobs in (None, ["STAGES"], ["BLOCK_N"]):
        for _ in range(20):
            p = op.mutate(STRONG, 0, rng, knobs)
            moved = p.changes["knobs"]
            assert len(moved) == (2 if knobs is None else 1) and p.changes["recipes"] == []
            classes_moved = {k.split(".")[0] for k in moved}
            assert len(classes_moved) == 1
            child = read_config(p.source)
            for label, ch in moved.items():
                cls, knob = label.split(".")
                assert knobs is None or knob in knobs
                assert ch["from"] != ch["to"] and child[cls][knob] == ch["to"]
                assert ch["to"] in space[cls][knob]
                assert f"{knob} {ch['from']} -> {ch['to']}" in p.hypothesis
            untouched = {c: v for c, v in child.items() if c not in classes_moved}
            assert untouched == {c: v for c, v in read_config(STRONG).items()
                                 if c not in classes_moved}


def test_mutation_picks_the_worst_class_most_often():
    op = OfflineOperator()
    rng = random.Random(1)
    ratios = {"D64_NC": 0.9, "D64_C": 0.92, "D128_NC": 0.95, "D128_C": 0.6}
    picked = Counter(next(iter(op.mutate(STRONG, 0, rng, ["WARPS"], ratios).changes["knobs"]))
                     .split(".")[0] for _ in range(300))
    assert picked.most_common(1)[0][0] == "D128_C" and picked["D128_C"] > 0.5 * 300
    assert all(picked[c] > 0 for c in ratios)  # the others still get tried
    assert pick_class(["a", "b"], {}, random.Random(0)) in ("a", "b")
    # a class no shape of the suite uses is never picked once others are measured
    assert {pick_class(["a", "b"], {"a": 0.9}, random.Random(i)) for i in range(20)} == {"a"}


def test_tile_move_scales_the_query_tile_and_its_warps_together():
    op = OfflineOperator()
    ratios = {"D64_NC": 0.8, "D64_C": 0.8, "NC": 0.5, "C": 0.9}
    picked = Counter()
    for seed in range(40):
        p = op.scale_tile(NAIVE, 0, random.Random(seed), ratios)
        (cls,) = {label.split(".")[0] for label in p.changes["knobs"]}
        picked[cls] += 1
        child, parent = read_config(p.source), read_config(NAIVE)
        assert child[cls]["BLOCK_M"] == 2 * parent[cls]["BLOCK_M"]
        assert child[cls]["num_warps"] == 2 * parent[cls]["num_warps"]
        assert {c: v for c, v in child.items() if c != cls} == \
            {c: v for c, v in parent.items() if c != cls}
        assert "rows per warp unchanged" in p.hypothesis
    assert picked.most_common(1)[0][0] == "NC"  # the worst class most often
    # flat CONFIGs pair BLOCK_M_<class> with WARPS_<class> (mha.py's D64 tiles made
    # 64-row: doubled with their warps; its D128 ones, 128 rows and 4 warps, cannot halve)
    flat = rewrite_config((SEEDS_DIR / "mha.py").read_text(),
                          {"BLOCK_M_D64_NC": 64, "BLOCK_M_D64_C": 64})
    for seed in range(10):
        moved = op.scale_tile(flat, 0, random.Random(seed)).changes["knobs"]
        (bm,) = [k for k in moved if k.startswith("BLOCK_M")]
        assert bm.endswith("_D64_NC") or bm.endswith("_D64_C")
        assert moved == {bm: {"from": 64, "to": 128},
                         bm.replace("BLOCK_M", "WARPS"): {"from": 4, "to": 8}}
    # the Gluon seed's classes: the D128 tiles (128 rows, 8 warps) halve, the D64 ones double
    gluon = (SEEDS_DIR / "gqa_gluon.py").read_text()
    for seed in range(10):
        moved = op.scale_tile(gluon, 0, random.Random(seed)).changes["knobs"]
        (cls,) = {label.split(".")[0] for label in moved}
        factor = 0.5 if cls.startswith("D128") else 2
        assert {k: v["to"] / v["from"] for k, v in moved.items()} == \
            {f"{cls}.BLOCK_M": factor, f"{cls}.WARPS": factor}
    assert op.scale_tile((SEEDS_DIR / "decode_naive.py").read_text(), 0, random.Random(0)) is None
    # offered to the bandit as its own kind
    ctx = SimpleNamespace(rng=random.Random(0), parent_source=NAIVE, parent=_cand(0),
                          second=None, second_source=None)
    assert "knobs:tile" in op.moves(ctx, [], lambda s: True)


def test_class_wise_crossover_takes_each_class_from_its_best_candidate():
    op = OfflineOperator()
    base = read_config(STRONG)
    a = rewrite_config(STRONG, {("D64_C", "STAGES"): 4, ("D128_NC", "WARPS"): 8})
    b = rewrite_config(STRONG, {("D128_NC", "BLOCK_N"): 128, ("D64_C", "WARPS"): 8})
    lineage = [  # (id, CONFIG, class ratios)
        (0, base, {"D64_NC": 0.9, "D64_C": 0.7, "D128_NC": 0.8, "D128_C": 0.85}),
        (3, read_config(a), {"D64_NC": 0.89, "D64_C": 0.8, "D128_NC": 0.75, "D128_C": 0.8}),
        (5, read_config(b), {"D64_NC": 0.85, "D64_C": 0.75, "D128_NC": 0.9, "D128_C": 0.84})]
    p = op.class_crossover(STRONG, 0, lineage)
    child = read_config(p.source)
    assert child["D64_C"] == read_config(a)["D64_C"]  # 0.8 from #3
    assert child["D128_NC"] == read_config(b)["D128_NC"]  # 0.9 from #5
    assert child["D64_NC"] == base["D64_NC"] and child["D128_C"] == base["D128_C"]
    assert p.changes["classes"] == {"D64_C": 3, "D128_NC": 5}
    assert p.parent2_id in (3, 5) and "D64_C from #3" in p.hypothesis
    # the parent already best everywhere: nothing to cross
    assert op.class_crossover(STRONG, 0, lineage[:1]) is None


def test_crossover_mixes_two_parents_configs():
    op = OfflineOperator()
    other = rewrite_config(NAIVE, {("NC", "BLOCK_N"): 128, ("C", "num_warps"): 8,
                                   ("D64_C", "num_stages"): 3})
    labels = {"NC.BLOCK_N", "C.num_warps", "D64_C.num_stages"}
    for seed in range(10):
        p = op.crossover(NAIVE, other, 4, 9, random.Random(seed))
        assert p.parent_id == 4 and p.parent2_id == 9 and p.changes["crossover_with"] == 9
        cfg = read_config(p.source)
        taken = set(p.changes["knobs"])
        assert taken and taken < labels
        for label in labels:
            cls, knob = label.split(".")
            src = other if label in taken else NAIVE
            assert cfg[cls][knob] == read_config(src)[cls][knob]
    assert op.crossover(NAIVE, NAIVE, 1, 2, random.Random(0)) is None


def test_propose_skips_sources_already_in_the_run(tmp_path):
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="smoke", status="running"))
    op = OfflineOperator()
    ctx = VariationContext(parent=_cand(0), parent_source=NAIVE, second=None, second_source=None,
                           run=SimpleNamespace(store=store), rng=random.Random(1),
                           evaluate=lambda s, suite: None)
    first = op.propose(ctx)
    c = _cand(1)
    c.source_sha256 = sha256_text(first.source)
    store.add_candidate(c)
    for _ in range(10):
        assert OfflineOperator().propose(ctx).source != first.source


# --- recipes ------------------------------------------------------------------

FIRST = ("fold_scale_exp2", "split_causal_loop", "swap_grid_order")  # new ones: test_recipes.py


@pytest.mark.parametrize("name", FIRST)
def test_recipe_applies_to_naive_seed_and_stays_correct(name, tmp_path):
    child = RECIPES[name].apply(NAIVE)
    assert child is not None and child != NAIVE
    err = _max_error(_load(child, tmp_path, name))
    assert math.isfinite(err) and err < 2e-2, f"{name}: max error {err}"


def test_recipes_are_not_applicable_where_the_pattern_is_absent():
    # the strong seed already folds the scale, splits the causal loop, and uses a 1-D grid
    for r in map(RECIPES.get, FIRST):
        assert r.apply(STRONG) is None
        assert r.apply("def attention(q, k, v, *, causal=False, sm_scale=None):\n    pass\n") is None
    folded = RECIPES["fold_scale_exp2"].apply(NAIVE)
    assert RECIPES["fold_scale_exp2"].apply(folded) is None
    split = RECIPES["split_causal_loop"].apply(NAIVE)
    assert RECIPES["split_causal_loop"].apply(split) is None
    assert "= tl.exp2(" in folded and "= tl.exp(" in NAIVE and "= tl.exp(" not in folded


def test_a_recipe_the_ancestry_applied_is_not_proposed_again(tmp_path):
    """swap_grid_order is its own inverse: on a grandchild of the swap it would undo it."""
    swapped = RECIPES["swap_grid_order"].apply(NAIVE)
    folded = RECIPES["fold_scale_exp2"].apply(swapped)
    assert RECIPES["swap_grid_order"].apply(folded) is not None  # the transform still applies
    seed = _cand(0)
    child = Candidate.proposed(0, swapped, "swap", {"kind": "recipe:swap_grid_order",
                                                    "recipes": ["swap_grid_order"]},
                               "offline").committed(1, 1)
    grandchild = Candidate.proposed(1, folded, "fold", {"kind": "recipe:fold_scale_exp2",
                                                        "recipes": ["fold_scale_exp2"]},
                                    "offline").committed(2, 2)
    history = [seed, child, grandchild]

    def moves(parent: Candidate, source: str) -> set[str]:
        ctx = VariationContext(parent=parent, parent_source=source, second=None,
                               second_source=None, run=SimpleNamespace(), rng=random.Random(0),
                               evaluate=lambda s, suite: None)
        return set(OfflineOperator().moves(ctx, history, lambda s: True))

    assert "recipe:swap_grid_order" in moves(seed, NAIVE)
    assert "recipe:swap_grid_order" not in moves(grandchild, folded)
    assert "recipe:fold_scale_exp2" not in moves(grandchild, folded)  # no longer applies
    assert "recipe:split_causal_loop" in moves(grandchild, folded)


def test_operator_records_recipe_as_hypothesis_and_kind(tmp_path):
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="smoke", status="running"))
    ctx = VariationContext(parent=_cand(0), parent_source=NAIVE, second=None, second_source=None,
                           run=SimpleNamespace(store=store), rng=random.Random(3),
                           evaluate=lambda s, suite: None)
    moves = OfflineOperator().moves(ctx, [], lambda s: True)
    assert {f"recipe:{n}" for n in FIRST} <= set(moves)
    assert {"knob:BLOCK_N:up", "knob:BLOCK_N:down"} <= set(moves)
    p = moves["recipe:split_causal_loop"]()
    assert p.hypothesis.startswith("split_causal_loop:")
    assert p.changes["knobs"] == {} and p.changes["crossover_with"] is None


def test_all_recipes_pass_the_smoke_evaluation(tmp_path):
    """The naive seed with all three recipes applied passes the real evaluator (interpreter)."""
    from evaluator import EvalOptions, evaluate

    src = NAIVE
    for r in map(RECIPES.get, FIRST):
        src = r.apply(src)
        assert src is not None
    path = tmp_path / "kernel.py"
    path.write_text(src)
    res = evaluate(path, target="gqa", suite="smoke",
                   options=EvalOptions(scratch_dir=tmp_path / "scratch", baselines=("cudnn",)))
    assert res.status == "ok", res.failure
    assert res.score is not None and res.score > 0


def test_split_class_gives_short_sequences_their_own_settings(tmp_path):
    op = OfflineOperator()
    rng = random.Random(2)
    ratios = {"D64_NC": 0.9, "D64_C": 0.9, "D128_NC": 0.9, "D128_C": 0.5}
    seen = Counter()
    for _ in range(30):
        p = op.split_class(STRONG, 0, rng, ratios)
        old, new = p.changes["split"]["from"], p.changes["split"]["to"]
        seen[old] += 1
        cfg = read_config(p.source)
        assert new in cfg and new.startswith(old + "_S") and set(cfg) == set(STRONG_CFG) | {new}
        (label, ch), = p.changes["knobs"].items()
        knob = label.split(".")[1]
        assert label.startswith(new + ".") and cfg[new] == {**cfg[old], knob: ch["to"]}
        assert read_search_space(p.source)[new] == read_search_space(STRONG)[old]
        # the new class takes the short shapes of its parent class, and only those
        mod = _load(p.source, tmp_path, f"split{_}")
        bound = int(new.rsplit("_S", 1)[1])
        D, causal = (64 if old.startswith("D64") else 128), old.endswith("_C")
        assert mod._settings(D, causal, bound) == cfg[new]
        assert mod._settings(D, causal, bound + 1) == cfg[old]
    assert seen.most_common(1)[0][0] == "D128_C"
    naive = op.split_class(NAIVE, 0, random.Random(0))
    assert naive.changes["split"]["to"] in read_config(naive.source)


def test_flat_config_is_one_class():
    """A flat CONFIG (seeds/mha.py) is the single class ALL: knob labels have no class."""
    mha = (SEEDS_DIR / "mha.py").read_text()
    op = OfflineOperator()
    p = op.mutate(mha, 0, random.Random(0), ["BLOCK_N_D64_C"])
    (label, ch), = p.changes["knobs"].items()
    assert label == "BLOCK_N_D64_C" and read_config(p.source)[label] == ch["to"]
    assert not p.hypothesis.startswith("class ")
    assert op.class_crossover(mha, 0, []) is None and op.split_class(mha, 0, random.Random(0)) \
        is None


def test_config_key_is_the_configuration_whatever_its_layout():
    """Same values written differently: one key; other values: another key; a literal the
    JSON form cannot hold (a set, tuple keys) must not raise (propose would fail on every
    call once such a candidate is in the run)."""
    flat = 'CONFIG = {"BLOCK_M": 64, "BLOCK_N": 32}\nSEARCH_SPACE = {"BLOCK_M": [64, 128]}\n'
    same = "CONFIG = {'BLOCK_N': 32,\n          'BLOCK_M': 64}\nSEARCH_SPACE = {'BLOCK_M': [64, 128]}\n"
    other = flat.replace("32", "64")
    assert config_key(flat) == config_key(same) != config_key(other)
    odd = flat.replace("[64, 128]", "{64, 128}") + "TABLE = 1\n"
    assert config_key(odd) != config_key(odd.replace('"BLOCK_N": 32', '"BLOCK_N": 64'))
    keyed = 'CONFIG = {("D64", "NC"): {"BLOCK_M": 64}, 1: 2, "x": 3}\n'
    assert config_key(keyed) != config_key(keyed.replace("64}", "128}"))


def test_structure_key_ignores_an_annotated_config():
    """`CONFIG: dict = {...}` (read and rewritten like the plain form) is CONFIG too: two
    candidates that differ only in its values have one structure (class crossover)."""
    src = STRONG.replace("CONFIG = {", "CONFIG: dict = {", 1)
    child = rewrite_config(src, {("D64_C", "STAGES"): 4})
    assert child != src and structure_key(child) == structure_key(src)
    assert config_key(child) != config_key(src)


@pytest.mark.parametrize("layout", [
    'CONFIG = {\n    "NC": {"BLOCK_M": 64},\n    "C": {"BLOCK_M": 32}\n}\n',  # no trailing comma
    'CONFIG = {"NC": {"BLOCK_M": 64}, "C": {"BLOCK_M": 32}}\n',  # one line
])
def test_add_class_keeps_any_config_layout_valid(layout):
    """The new class goes after the last one here (no comma of its own to follow)."""
    out = add_class(layout + "X = 1\n", "C", "C_S1024", {"BLOCK_M": 128})
    assert read_config(out) == {"NC": {"BLOCK_M": 64}, "C": {"BLOCK_M": 32},
                                "C_S1024": {"BLOCK_M": 128}}
    assert out.endswith("X = 1\n")


def test_split_class_passes_over_a_key_outside_the_class_grammar():
    """A kernel with its own class lookup may use other keys: split the others, never
    raise (an exception in propose is an operator error; a few in a row stop the run)."""
    src = ('CONFIG = {\n    "NC": {"BLOCK_M": 64},\n    "NC_fp8": {"BLOCK_M": 64},\n}\n'
           'SEARCH_SPACE = {"BLOCK_M": [32, 64, 128]}\n')
    for seed in range(5):
        p = OfflineOperator().split_class(src, 0, random.Random(seed))
        assert p is not None and p.changes["split"]["from"] == "NC"


def test_split_class_changes_only_the_shapes_it_names():
    """After a split at 4096, a split of the same class at 1024 would take the shapes
    <= 1024 from the S4096 class (the tighter bound wins) and give them the unsplit
    class's settings: the child must differ from its parent only in the one recorded
    knob, on the new class's shapes."""
    from evolve.operators.shape_classes import settings
    src = ('CONFIG = {\n    "D64_NC": {"BLOCK_M": 64, "BLOCK_N": 64},\n'
           '    "D64_NC_S4096": {"BLOCK_M": 128, "BLOCK_N": 32},\n'
           '    "NC": {"BLOCK_M": 64, "BLOCK_N": 64},\n    "C": {"BLOCK_M": 64, "BLOCK_N": 64},\n}\n'
           'SEARCH_SPACE = {"BLOCK_M": [32, 64, 128], "BLOCK_N": [32, 64, 128]}\n')
    parent, made = read_config(src), set()
    for seed in range(12):
        p = OfflineOperator().split_class(src, 0, random.Random(seed))
        child, new = read_config(p.source), p.changes["split"]["to"]
        made.add(new)
        (label, ch), = p.changes["knobs"].items()
        knob = label.split(".")[1]
        for D in (32, 64, 128):
            for causal in (False, True):
                for S in (1, 1024, 1025, 4096, 4097, 65536):
                    a, b = settings(parent, D, causal, S), settings(child, D, causal, S)
                    if a != b:
                        assert b == child[new], (new, D, causal, S)
                        assert {k for k in a if a[k] != b[k]} == {knob}, (new, D, causal, S)
    assert made and "D64_NC_S1024" not in made


def test_class_crossover_compares_a_class_only_where_it_covers_the_same_shapes():
    """A candidate split D64_NC at 1024: its D64_NC ratio is over the long sequences only,
    not comparable with the parent's D64_NC (all sequences), so it is no donor for it."""
    op = OfflineOperator()
    base = read_config(STRONG)
    split = {**{c: dict(v) for c, v in base.items()},
             "D64_NC_S1024": {**base["D64_NC"], "BLOCK_M": 128}}
    split["D64_NC"]["WARPS"] = 8
    lineage = [(0, base, {"D64_NC": 0.8, "D64_C": 0.7, "D128_NC": 0.8, "D128_C": 0.85}),
               (4, split, {"D64_NC": 0.95, "D64_NC_S1024": 0.6, "D64_C": 0.7,
                           "D128_NC": 0.8, "D128_C": 0.85})]
    assert op.class_crossover(STRONG, 0, lineage) is None


def test_retired_recipes_are_not_proposed_where_they_were_measured_to_lose(tmp_path):
    """Measured on an H100 against both gqa seeds (2026-12-06): num_ctas_2 and
    warp_specialize_kv fail to compile, range_unroll2, persistent_lpt and maxnreg_168 lose
    24-56 % on gqa. The operator leaves them out there; maxnreg_168 paid +48.8 % on
    decode_naive, so the decode target keeps it."""
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="smoke", status="running"))

    def moves(source: str, target: str) -> set[str]:
        run = SimpleNamespace(store=store, config=SimpleNamespace(target=target))
        ctx = VariationContext(parent=_cand(0), parent_source=source, second=None,
                               second_source=None, run=run, rng=random.Random(0),
                               evaluate=lambda s, suite: None)
        return set(OfflineOperator().moves(ctx, [], lambda s: True))

    gone = {"num_ctas_2", "range_unroll2", "persistent_lpt", "maxnreg_168"}
    assert all(RECIPES[n].apply(NAIVE) is not None for n in gone)  # they still apply
    gqa = moves(NAIVE, "gqa")
    assert not {f"recipe:{n}" for n in gone} & gqa
    assert {"recipe:fold_scale_exp2", "recipe:tma_store_o", "recipe:unmasked_full_tiles"} <= gqa
    assert "recipe:warp_specialize_kv" not in moves(STRONG, "gqa")
    assert RECIPES["warp_specialize_kv"].apply(STRONG) is not None
    decode = (SEEDS_DIR / "decode_naive.py").read_text()
    assert RECIPES["maxnreg_168"].apply(decode) is not None
    assert "recipe:maxnreg_168" in moves(decode, "decode")
    assert "recipe:num_ctas_2" not in moves(decode, "decode")
    assert RECIPES["fold_scale_exp2"].retired_on("gqa") == ""
    assert "session7" in RECIPES["num_ctas_2"].retired_on("decode")
