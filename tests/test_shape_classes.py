"""Per-shape-class CONFIGs: the class rule, the seeds' copies of it, and the proof that
seeds/gqa.py's classed CONFIG launches every default-suite shape exactly as the flat
CONFIG it replaced did (so its measured 0.888 of cuDNN on an H100 still holds)."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

from evaluator import EvalResult, ShapeResult, get_target
from evolve.operators.config_edit import read_config
from evolve.operators.shape_classes import (
    Measured,
    ShapeClassError,
    class_of,
    class_ratios,
    render_class_table,
    render_steady_table,
    seed_class_rows,
    settings,
    steady_gains,
)
from evolve.paths import SEEDS_DIR

# seeds/gqa.py's CONFIG before the classes (commit e3c8a6f), and how its wrapper read it
FLAT_GQA = {
    "BLOCK_M_D64_NC": 64, "BLOCK_N_D64_NC": 64, "WARPS_D64_NC": 4, "FLAT_D64_NC": 1,
    "HOST_DESC_D64_NC": 1, "PERSIST_D64_NC": 0, "STAGES_D64_NC": 4,
    "BLOCK_M_D64_C": 64, "BLOCK_N_D64_C": 64, "WARPS_D64_C": 4, "FLAT_D64_C": 0,
    "HOST_DESC_D64_C": 1, "REVERSE_M_D64_C": 1, "STAGES_D64_C": 3,
    "BLOCK_M_D128_NC": 128, "BLOCK_N_D128_NC": 64, "WARPS_D128_NC": 4, "FLAT_D128_NC": 0,
    "HOST_DESC_D128_NC": 1, "PERSIST_D128_NC": 0, "STAGES_D128_NC": 2,
    "BLOCK_M_D128_C": 128, "BLOCK_N_D128_C": 64, "WARPS_D128_C": 4, "FLAT_D128_C": 0,
    "HOST_DESC_D128_C": 1, "REVERSE_M_D128_C": 0, "STAGES_D128_C": 2,
}


def _flat_launch(mod, B, Hq, S, D, causal, elem=2):
    """The launch the flat-CONFIG wrapper made (its code, line for line, on FLAT_GQA)."""
    cls = ("_D64" if D <= 64 else "_D128") + ("_C" if causal else "_NC")
    block_m, block_n = FLAT_GQA["BLOCK_M" + cls], FLAT_GQA["BLOCK_N" + cls]
    if causal:
        block_n = min(block_n, block_m)
    return {"grid": (B * Hq * -(-S // block_m),), "BLOCK_M": block_m, "BLOCK_N": block_n,
            "CAUSAL": causal, "EVEN_N": S % block_n == 0,
            "REVERSE_M": causal and bool(FLAT_GQA["REVERSE_M" + cls]),
            "FLAT": bool(FLAT_GQA["FLAT" + cls]), "HOST_DESC": bool(FLAT_GQA["HOST_DESC" + cls]),
            "num_warps": FLAT_GQA["WARPS" + cls],
            "num_stages": mod._fit_stages(block_m, block_n, D, FLAT_GQA["STAGES" + cls], elem),
            "persist": 0 if causal else FLAT_GQA.get("PERSIST" + cls, 0)}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"classes_{name}", SEEDS_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Recorder:
    """Stands in for a @triton.jit kernel: records grid and launch keywords."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kw: self.calls.append({"grid": grid, **kw})


def _launch(mod, B, Hq, Hkv, S, D, causal):
    """What seeds/gqa.py launches for a shape (meta tensors: nothing runs)."""
    rec = _Recorder()
    mod._attn_fwd, mod._attn_fwd_persist = rec, rec
    mod._host_descriptors = lambda q, k, v, out, bm, bn, flat: (q, k, v, out)
    q = torch.empty(B, Hq, S, D, dtype=torch.bfloat16, device="meta")
    k = torch.empty(B, Hkv, S, D, dtype=torch.bfloat16, device="meta")
    mod.attention(q, k, k, causal=causal)
    (call,) = rec.calls
    cfg = mod._settings(D, causal, S)
    keys = ("grid", "BLOCK_M", "BLOCK_N", "CAUSAL", "EVEN_N", "REVERSE_M", "FLAT",
            "HOST_DESC", "num_warps", "num_stages")
    return {**{k: call[k] for k in keys}, "persist": 0 if causal else cfg.get("PERSIST", 0)}


def test_gqa_seed_launches_every_default_shape_as_the_flat_config_did():
    mod = _load("gqa")
    shapes = get_target("gqa").suite("default") + get_target("gqa").suite("quick")
    assert len(shapes) >= 24
    for sh in shapes:
        got = _launch(mod, sh.B, sh.Hq, sh.Hkv, sh.S, sh.D, sh.causal)
        assert got == _flat_launch(mod, sh.B, sh.Hq, sh.S, sh.D, sh.causal), sh.name
    # and every class holds exactly the flat knobs of its (head dim, causal) pair
    for cls, knobs in read_config((SEEDS_DIR / "gqa.py").read_text()).items():
        assert knobs == {k.removesuffix("_" + cls): v for k, v in FLAT_GQA.items()
                         if k.endswith("_" + cls)}


@pytest.mark.parametrize("name", ["gqa", "gqa_naive", "gqa_gluon"])
def test_seed_copy_of_the_class_rule_matches_the_operators(name):
    mod = _load(name)
    config = read_config((SEEDS_DIR / f"{name}.py").read_text())
    assert config == mod.CONFIG
    for D, causal, S in itertools.product((16, 32, 64, 128), (False, True), (1, 1024, 16384)):
        assert mod._settings(D, causal, S) == settings(config, D, causal, S)


def test_class_rule_tightest_bounds_win():
    cfg = {"C": {"a": 1}, "NC": {"a": 2}, "D64_C": {"a": 3}, "D128_C_S1024": {"a": 4},
           "D128": {"a": 5}}
    assert class_of(cfg, 64, True, 4096) == "D64_C"
    assert class_of(cfg, 128, True, 1024) == "D128_C_S1024"
    assert class_of(cfg, 128, True, 1025) == "D128"  # a head-dim bound beats none
    assert class_of(cfg, 256, True, 10) == "C"
    assert class_of(cfg, 256, False, 10) == "NC"
    assert class_of({"BLOCK_M": 64}, 64, True, 1) == "ALL"
    with pytest.raises(ShapeClassError):
        class_of({"D64": {"a": 1}}, 128, False, 1)
    with pytest.raises(ShapeClassError):
        class_of({"X64": {"a": 1}}, 64, False, 1)


def test_class_ratios_geomean_per_class():
    def shape(D, causal, S, x):
        return ShapeResult(name=f"{D}{causal}{S}", B=1, Hq=8, Hkv=2, S=S, D=D, causal=causal,
                           dtype="bfloat16", speedup=x)
    res = EvalResult(status="ok", target="gqa", suite="default",
                     shapes=[shape(64, False, 1024, 0.5), shape(64, False, 4096, 2.0),
                             shape(128, True, 1024, 0.7), shape(128, False, 1024, None)])
    cfg = read_config((SEEDS_DIR / "gqa.py").read_text())
    assert class_ratios(cfg, res) == pytest.approx({"D64_NC": 1.0, "D128_C": 0.7})
    assert class_ratios(cfg, None) == {}


def test_class_table_reads_every_class_over_the_seeds_shapes():
    """H100 Gluon run (2026-12-06): a child split D128_C at S=4096; its own "D128_C" then
    held only the S=16384 shapes and the old table read 0.883 -> 0.947 for settings equal
    to the seed's. Rows now cover the seed's shapes of each class, show the spread of the
    candidates that ran the seed's code and settings there, and mark source changes."""
    seed = read_config((SEEDS_DIR / "gqa.py").read_text())
    split = {**seed, "D128_C_S4096": dict(seed["D128_C"], STAGES=3)}
    tuned = {c: dict(v) for c, v in seed.items()}
    tuned["D64_C"]["STAGES"] = 4

    def result(short, long, d64):
        return EvalResult(status="ok", target="gqa", suite="default", shapes=[
            ShapeResult(name=f"S{S}", B=1, Hq=8, Hkv=2, S=S, D=128, causal=True,
                        dtype="bfloat16", speedup=x) for S, x in ((1024, short), (16384, long))
        ] + [ShapeResult(name="d64", B=1, Hq=8, Hkv=2, S=1024, D=64, causal=True,
                         dtype="bfloat16", speedup=d64)])

    entries = [Measured(0, seed, result(0.80, 0.90, 0.70)),
               Measured(1, split, result(0.70, 0.99, 0.71)),  # its "D128_C": S=16384 only
               Measured(2, tuned, result(0.81, 0.91, 0.80)),
               Measured(3, seed, result(0.90, 0.95, 0.60), seed_code=False)]
    rows = {r.cls: r for r in seed_class_rows(entries)}
    d128 = rows["D128_C"]
    assert d128.seed == pytest.approx(math.sqrt(0.80 * 0.90))
    assert (d128.best_id, d128.best) == (3, pytest.approx(math.sqrt(0.90 * 0.95)))
    assert d128.change == "(the seed's) + code"
    # the split child reads sqrt(0.70 * 0.99) = 0.832 over the seed's two shapes, not 0.99
    assert d128.spread == (2, pytest.approx(math.sqrt(0.80 * 0.90)),
                           pytest.approx(math.sqrt(0.81 * 0.91)))
    assert rows["D64_C"].best_id == 2 and rows["D64_C"].change == "STAGES 3->4"
    assert rows["D64_C"].spread == (2, pytest.approx(0.70), pytest.approx(0.71))
    assert set(rows) == {"D128_C", "D64_C"}  # classes with no measured shape are left out
    lone = [Measured(0, seed, result(0.80, 0.90, 0.70)),
            Measured(1, split, result(0.85, 0.99, 0.70))]
    assert {r.cls: r for r in seed_class_rows(lone)}["D128_C"].change == \
        "split: D128_C: the seed's; D128_C_S4096: STAGES 2->3"
    table = render_class_table(entries).splitlines()
    assert table[1].split() == ["D128_C", "0.849", "0.925", "#3", "2x", "0.849-0.859",
                                "(the", "seed's)", "+", "code"]
    assert seed_class_rows([Measured(5, seed, result(1, 1, 1))]) == []  # no seed (id 0)


def test_steady_best_is_a_mean_over_repeated_runs_weighted_by_the_class_share():
    """H100, 12-minute run from seeds/gqa.py (2026-12-07): the best single reading of a
    class often came from the seed's own settings (noise); the one setting that paid on
    every run, D64_C STAGES 3->2 (+3.6 % over 10 runs), covers 3 of the 24 shapes, so it
    adds +0.4 % to the suite. The steady table says that; a lucky single run does not
    count, nor does a candidate whose code differs."""
    seed = read_config((SEEDS_DIR / "gqa.py").read_text())
    lucky = {c: dict(v) for c, v in seed.items()}
    lucky["D128_C"]["STAGES"] = 3
    tuned = {c: dict(v) for c, v in seed.items()}
    tuned["D64_C"]["STAGES"] = 4

    def result(d128, d64):
        return EvalResult(status="ok", target="gqa", suite="default", shapes=[
            ShapeResult(name=f"S{S}", B=1, Hq=8, Hkv=2, S=S, D=128, causal=True,
                        dtype="bfloat16", speedup=d128) for S in (1024, 2048, 4096)
        ] + [ShapeResult(name="d64", B=1, Hq=8, Hkv=2, S=1024, D=64, causal=True,
                         dtype="bfloat16", speedup=d64)])

    entries = [Measured(0, seed, result(0.80, 0.70)), Measured(1, seed, result(0.82, 0.72)),
               Measured(2, seed, result(0.78, 0.68)), Measured(3, lucky, result(0.95, 0.70)),
               *(Measured(i, tuned, result(0.80, 0.77)) for i in (4, 5, 6)),
               Measured(7, tuned, result(0.80, 0.99), seed_code=False)]
    rows = {r.cls: r for r in seed_class_rows(entries)}
    assert rows["D128_C"].best_id == 3  # the single best reading: one lucky run
    assert rows["D128_C"].steady == ("(the seed's)", 6, pytest.approx(0.80))
    assert rows["D64_C"].steady == ("STAGES 3->4", 3, pytest.approx(0.77))
    assert rows["D64_C"].seed_mean == pytest.approx(0.70)
    assert (rows["D128_C"].shapes, rows["D64_C"].shapes) == (3, 1)
    adds, total = steady_gains(list(rows.values()))
    assert adds == {"D128_C": 0.0, "D64_C": pytest.approx(math.log(1.1) / 4)}
    assert total == pytest.approx(math.log(1.1) / 4)
    table = render_steady_table(entries).splitlines()
    assert table[2].split() == ["D64_C", "1/4", "4x", "0.700", "STAGES", "3->4", "3", "0.770",
                                "+10.0", "%", "+2.4", "%"]
    assert table[-1] == "every class at its best steady settings: +2.4 % on the suite's geomean"
    alone = render_steady_table(entries[:2]).splitlines()
    assert all(line.endswith("(no setting run 3+ times)") for line in alone[1:3])
    assert alone[-1].endswith(": +0.0 % on the suite's geomean")


@pytest.mark.parametrize("name", ["gqa", "gqa_naive", "gqa_gluon"])
@pytest.mark.parametrize("key", ["D64_NC_bf16", "X64", "D64__NC", "Dx"])
def test_seed_copy_rejects_the_keys_the_operator_rejects(name, key):
    """A key outside the grammar is an error in both copies of the rule (the seed's copy
    must not read it as a catch-all class the operator cannot see)."""
    mod = _load(name)
    mod.CONFIG = {key: dict(next(iter(mod.CONFIG.values())))}
    with pytest.raises(ShapeClassError):
        class_of(mod.CONFIG, 64, False, 128)
    with pytest.raises(ValueError):
        mod._settings(64, False, 128)
