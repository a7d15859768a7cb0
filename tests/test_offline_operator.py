"""The offline operator: CONFIG edits, mutation, crossover and the source recipes."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from evolve.operators.base import VariationContext
from evolve.operators.config_edit import (
    ConfigEditError,
    read_config,
    read_search_space,
    rewrite_config,
)
from evolve.operators.offline import OfflineOperator
from evolve.operators.recipes import RECIPES
from evolve.paths import SEEDS_DIR
from evolve.records import Candidate, RunRecord
from evolve.records import sha256_text
from evolve.store import LineageStore

NAIVE = (SEEDS_DIR / "gqa_naive.py").read_text()
STRONG = (SEEDS_DIR / "gqa.py").read_text()


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
            worst = max(worst, (out.float() - ref).abs().max().item())
    return worst


# --- CONFIG edits -------------------------------------------------------------

def test_config_read_and_rewrite_only_touches_the_values():
    cfg, space = read_config(NAIVE), read_search_space(NAIVE)
    assert cfg["BLOCK_N"] == 64 and 128 in space["BLOCK_N"]
    out = rewrite_config(NAIVE, {"BLOCK_N": 128, "num_warps": 8})
    assert read_config(out) == {**cfg, "BLOCK_N": 128, "num_warps": 8}
    changed = [(a, b) for a, b in zip(NAIVE.splitlines(), out.splitlines()) if a != b]
    assert len(changed) == 2 and len(out.splitlines()) == len(NAIVE.splitlines())
    with pytest.raises(ConfigEditError):
        rewrite_config(NAIVE, {"NOT_A_KNOB": 1})
    with pytest.raises(ConfigEditError):
        rewrite_config("x = 1\n", {"BLOCK_N": 1})
    assert read_config("CONFIG = dict(a=1)\n") == {}
    # ast columns are UTF-8 bytes: a non-ASCII key before the value must not shift the splice
    out = rewrite_config('CONFIG = {"é": 1, "B": 2}\n', {"B": 3})
    assert out == 'CONFIG = {"é": 1, "B": 3}\n'


def test_mutation_changes_one_or_two_knobs_within_search_space():
    op = OfflineOperator()
    rng = random.Random(0)
    seen = set()
    for _ in range(40):
        p = op.mutate(STRONG, 0, rng)
        knobs = p.changes["knobs"]
        assert 1 <= len(knobs) <= 2 and p.changes["recipes"] == []
        child_cfg, space = read_config(p.source), read_search_space(STRONG)
        for k, ch in knobs.items():
            assert ch["from"] != ch["to"] and child_cfg[k] == ch["to"] and ch["to"] in space[k]
            assert f"{k} {ch['from']} -> {ch['to']}" in p.hypothesis
        seen.add(len(knobs))
    assert seen == {1, 2}


def test_crossover_mixes_two_parents_configs():
    op = OfflineOperator()
    other = rewrite_config(NAIVE, {"BLOCK_N": 128, "num_warps": 8, "num_stages": 3})
    for seed in range(10):
        p = op.crossover(NAIVE, other, 4, 9, random.Random(seed))
        assert p.parent_id == 4 and p.parent2_id == 9 and p.changes["crossover_with"] == 9
        cfg = read_config(p.source)
        taken = set(p.changes["knobs"])
        assert taken and taken < {"BLOCK_N", "num_warps", "num_stages"}
        for k in ("BLOCK_N", "num_warps", "num_stages"):
            assert cfg[k] == (read_config(other)[k] if k in taken else read_config(NAIVE)[k])
    assert op.crossover(NAIVE, NAIVE, 1, 2, random.Random(0)) is None


def test_propose_skips_sources_already_in_the_run(tmp_path):
    store = LineageStore.create(tmp_path / "l.db", RunRecord(
        name="r", target="gqa", operator="offline", model="", suite="smoke", status="running"))
    op = OfflineOperator(recipe_prob=0.0)
    ctx = VariationContext(parent=_cand(0), parent_source=NAIVE, second=None, second_source=None,
                           run=SimpleNamespace(store=store), rng=random.Random(1),
                           evaluate=lambda s, suite: None)
    first = op.propose(ctx)
    c = _cand(1)
    c.source_sha256 = sha256_text(first.source)
    store.add_candidate(c)
    for _ in range(10):
        assert op.propose(ctx).source != first.source


# --- recipes ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_applies_to_naive_seed_and_stays_correct(name, tmp_path):
    child = RECIPES[name].apply(NAIVE)
    assert child is not None and child != NAIVE
    err = _max_error(_load(child, tmp_path, name))
    assert math.isfinite(err) and err < 2e-2, f"{name}: max error {err}"


def test_recipes_are_not_applicable_where_the_pattern_is_absent():
    # the strong seed already folds the scale, splits the causal loop, and uses a 1-D grid
    for r in RECIPES.values():
        assert r.apply(STRONG) is None
        assert r.apply("def attention(q, k, v, *, causal=False, sm_scale=None):\n    pass\n") is None
    folded = RECIPES["fold_scale_exp2"].apply(NAIVE)
    assert RECIPES["fold_scale_exp2"].apply(folded) is None
    split = RECIPES["split_causal_loop"].apply(NAIVE)
    assert RECIPES["split_causal_loop"].apply(split) is None
    assert "= tl.exp2(" in folded and "= tl.exp(" in NAIVE and "= tl.exp(" not in folded


def test_operator_records_recipe_as_hypothesis():
    op = OfflineOperator(recipe_prob=1.0)
    p = op.recipe(NAIVE, 0, random.Random(3))
    name = p.changes["recipes"][0]
    assert name in RECIPES and p.hypothesis.startswith(name + ":")
    assert p.changes["knobs"] == {} and p.changes["crossover_with"] is None


def test_all_recipes_pass_the_smoke_evaluation(tmp_path):
    """The naive seed with all three recipes applied passes the real evaluator (interpreter)."""
    from evaluator import EvalOptions, evaluate

    src = NAIVE
    for r in RECIPES.values():
        src = r.apply(src)
        assert src is not None
    path = tmp_path / "kernel.py"
    path.write_text(src)
    res = evaluate(path, target="gqa", suite="smoke",
                   options=EvalOptions(scratch_dir=tmp_path / "scratch", baselines=("cudnn",)))
    assert res.status == "ok", res.failure
    assert res.score is not None and res.score > 0
