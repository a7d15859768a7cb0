"""The structural recipes: where each applies, that its output passes the evaluator's
static check, and that it is still a correct kernel (Triton interpreter, fp16). Options
the interpreter ignores (tl.range hints, maxnreg, num_ctas) are checked for correctness
here and measured on a GPU by `benchmarks/gpu/run.sh recipes`; the GPU test at the end
compiles and checks each one where CUDA is present."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from evaluator.static_check import check_source
from evolve.operators.recipes import RECIPES
from evolve.paths import SEEDS_DIR

SEEDS = {n: (SEEDS_DIR / f"{n}.py").read_text() for n in ("gqa_naive", "gqa", "gqa_gluon")}
NEW = ("tma_load_kv", "tma_store_o", "persistent_lpt", "range_unroll2",
       "range_no_acc_multibuffer", "range_flatten", "warp_specialize_kv", "maxnreg_168",
       "num_ctas_2", "unmasked_full_tiles")
# where each new recipe's pattern is present (and absent) among the seeds
APPLIES = {
    "tma_load_kv": {"gqa_naive"},
    "tma_store_o": {"gqa_naive"},
    "persistent_lpt": {"gqa_naive", "gqa"},
    "range_unroll2": {"gqa_naive", "gqa"},
    "range_no_acc_multibuffer": {"gqa_naive", "gqa"},
    "range_flatten": {"gqa"},
    "warp_specialize_kv": {"gqa"},
    "maxnreg_168": {"gqa_naive", "gqa", "gqa_gluon"},
    "num_ctas_2": {"gqa_naive", "gqa"},  # Gluon layouts are written for one CTA
    "unmasked_full_tiles": {"gqa_naive"},  # gqa.py masks only its ragged last tile already
}
CASES = [(r, s) for r in NEW for s in sorted(APPLIES[r]) if s != "gqa_gluon"]


def _load(source: str, tmp_path: Path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _max_error(mod, device: str = "cpu", dtype=torch.float16) -> float:
    """Largest |out - fp32 reference| over small GQA shapes, ragged S, both causal modes;
    1/8 of the query rows scaled by 8..30 (the evaluator's `large_rows` inputs)."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for causal in (False, True):
        for S, D in ((40, 64), (96, 64), (33, 128)):
            q, k, v = (torch.randn(1, h, S, D, generator=gen) for h in (4, 2, 2))
            big = torch.rand(1, 4, S, 1, generator=gen) < 0.125
            q = torch.where(big, q * (8 + 22 * torch.rand(1, 4, S, 1, generator=gen)), q)
            q, k, v = (t.to(dtype=dtype, device=device) for t in (q, k, v))
            out = mod.attention(q, k, v, causal=causal, sm_scale=0.3)
            ref = torch.nn.functional.scaled_dot_product_attention(
                q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
                is_causal=causal, scale=0.3)
            err = (out.float() - ref).abs().max().item()
            worst = math.inf if math.isnan(err) else max(worst, err)  # max() drops a NaN
    return worst


def test_at_least_eight_new_recipes_each_applies_only_where_its_pattern_is():
    assert set(NEW) <= set(RECIPES) and len(NEW) >= 8
    for name in NEW:
        r = RECIPES[name]
        assert r.rationale and len(r.rationale) > 40
        got = {s for s, src in SEEDS.items() if r.apply(src) is not None}
        assert got == APPLIES[name], name
        assert r.apply("def attention(q, k, v, *, causal=False, sm_scale=None):\n    pass\n") \
            is None
        once = r.apply(sorted(SEEDS[s] for s in APPLIES[name])[0])
        assert r.apply(once) is None, f"{name} applies twice"


@pytest.mark.parametrize("name", NEW)
def test_recipe_output_passes_the_static_check(name):
    for seed in APPLIES[name]:
        assert check_source(RECIPES[name].apply(SEEDS[seed]), f"{seed}.py") == [], (name, seed)


_SEED_ERROR: dict[str, float] = {}


def _bound(seed: str, tmp_path: Path) -> float:
    """The evaluator's kind of bound: twice the seed's own error plus a floor."""
    if seed not in _SEED_ERROR:
        _SEED_ERROR[seed] = _max_error(_load(SEEDS[seed], tmp_path, f"seed_{seed}"))
    return 2 * _SEED_ERROR[seed] + 3.2e-3


@pytest.mark.parametrize("name,seed", CASES)
def test_recipe_keeps_the_kernel_correct(name, seed, tmp_path):
    child = RECIPES[name].apply(SEEDS[seed])
    err = _max_error(_load(child, tmp_path, f"{name}_{seed}"))
    assert math.isfinite(err) and err <= _bound(seed, tmp_path), f"{name} on {seed}: {err}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", ["gqa_naive", "gqa"])
def test_stacked_recipes_pass_the_smoke_evaluation(seed, tmp_path):
    """Every new recipe that applies, stacked on the seed, passes the real evaluator
    (interpreter, smoke suite, fp16: its correctness rule and adversarial inputs: needles,
    large rows, near-constant V, a transposed layout)."""
    from evaluator import EvalOptions, evaluate

    src, used = SEEDS[seed], []
    for name in ("host_tma_kv", "host_tma_o", "host_tma_q") + NEW:
        out = RECIPES[name].apply(src)
        if out is not None:
            src, used = out, used + [name]
    host = {"host_tma_kv", "host_tma_o", "host_tma_q"}
    assert len(used) >= 5 and (seed != "gqa_naive" or host <= set(used)), used
    path = tmp_path / "kernel.py"
    path.write_text(src)
    res = evaluate(path, target="gqa", suite="smoke",
                   options=EvalOptions(scratch_dir=tmp_path / "scratch", baselines=("cudnn",)))
    assert res.status == "ok", (used, res.failure)


def test_recipes_compose_on_the_naive_seed(tmp_path):
    """Memory and schedule recipes stack: the naive seed with all of them stays correct."""
    src = SEEDS["gqa_naive"]
    for name in ("fold_scale_exp2", "split_causal_loop", "unmasked_full_tiles", "tma_load_kv",
                 "tma_store_o", "persistent_lpt", "range_unroll2", "warp_specialize_kv"):
        out = RECIPES[name].apply(src)
        assert out is not None, name
        src = out
    assert check_source(src, "k.py") == []
    err = _max_error(_load(src, tmp_path, "stacked"))
    assert err <= _bound("gqa_naive", tmp_path), err


@pytest.mark.parametrize("first", ["unmasked_full_tiles", "split_causal_loop"])
def test_full_key_tiles_skip_the_mask_and_stay_correct(first, tmp_path):
    """unmasked_full_tiles: the host passes EVEN_N = S % BLOCK_N == 0, and only then (and
    off the causal band) the scores skip the mask against S. Checked where every tile is
    full (S = 64, 128) and where the last one is ragged, composed with the causal split
    in either order."""
    second = {"unmasked_full_tiles": "split_causal_loop"}.get(first, "unmasked_full_tiles")
    src = RECIPES[second].apply(RECIPES[first].apply(SEEDS["gqa_naive"]))
    assert src is not None and "EVEN_N=S % block_n == 0" in src
    assert "if CAUSAL or not EVEN_N:" in src
    mod = _load(src, tmp_path, f"even_{first}")
    seed = _load(SEEDS["gqa_naive"], tmp_path, f"even_seed_{first}")
    gen = torch.Generator().manual_seed(1)
    for causal in (False, True):
        for S, D in ((64, 128), (128, 64), (96, 64)):
            q, k, v = (torch.randn(1, h, S, D, generator=gen).half() for h in (4, 2, 2))
            ref = torch.nn.functional.scaled_dot_product_attention(
                q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
                is_causal=causal)
            bound = 2 * (seed.attention(q, k, v, causal=causal).float() - ref).abs().max() + 3.2e-3
            err = (mod.attention(q, k, v, causal=causal).float() - ref).abs().max()
            assert err <= bound, (causal, S, D, float(err))


def test_warp_specialize_only_on_unmasked_iterations():
    out = RECIPES["warp_specialize_kv"].apply(SEEDS["gqa"])
    assert "warp_specialize=MASK == 0" in out


@pytest.mark.gpu
@pytest.mark.parametrize("name", NEW)
def test_recipe_compiles_and_is_correct_on_the_gpu(name, tmp_path):
    """Where the options matter: compiled for the GPU (Gluon seed included), bf16."""
    for seed in sorted(APPLIES[name]):
        base = _max_error(_load(SEEDS[seed], tmp_path, f"gpu_seed_{seed}"), "cuda", torch.bfloat16)
        child = RECIPES[name].apply(SEEDS[seed])
        err = _max_error(_load(child, tmp_path, f"gpu_{name}_{seed}"), "cuda", torch.bfloat16)
        assert math.isfinite(err) and err <= 2 * base + 3.2e-3, f"{name} on {seed}: {err}"


def test_recipe_benchmark_picks_applicable_recipes_and_judges_them():
    """benchmarks/gpu/recipe_bench.py (the GPU measurement of every recipe): its CPU part."""
    sys.path.insert(0, str(SEEDS_DIR.parent / "benchmarks" / "gpu"))
    import recipe_bench

    assert set(recipe_bench.children(SEEDS["gqa"])) == {n for n in RECIPES
                                                       if RECIPES[n].apply(SEEDS["gqa"])}
    assert set(recipe_bench.children(SEEDS["gqa"], ["range_unroll2", "tma_store_o"])) == \
        {"range_unroll2"}
    ms = {"SDPA-cuDNN": {"a": 1.0, "b": 1.0}, "seed": {"a": 1.25, "b": 1.25},
          "fast": {"a": 1.0, "b": 1.25}, "same": {"a": 1.25, "b": 1.24},
          "wrong": {"a": 0.5, "b": 0.5}, "half": {"a": 1.0, "b": None}}
    ok = {"a": {"ok": True}, "b": {"ok": True}}
    checks = {"fast": ok, "same": ok, "half": ok,
              "wrong": {"a": {"ok": False}, "b": {"ok": True}}}
    v = recipe_bench.verdicts(ms, checks, "SDPA-cuDNN", 0.01)
    assert v["fast"]["verdict"] == "kept" and abs(v["fast"]["gain_vs_seed"] - 1.118) < 1e-3
    assert v["same"]["verdict"].startswith("dropped: gain")
    assert v["wrong"]["verdict"].startswith("dropped: check failed")
    assert v["half"]["verdict"] == "dropped: timed on 1/2 shapes"
    assert abs(v["fast"]["vs_cudnn"] - 0.894) < 1e-3
    # --after: the base of the comparison is the seed with those recipes stacked
    base = recipe_bench.stacked(SEEDS["gqa_naive"], ["tma_load_kv"])
    assert base == RECIPES["tma_load_kv"].apply(SEEDS["gqa_naive"])
    assert set(recipe_bench.children(base, ["host_tma_kv"])) == {"host_tma_kv"}
    with pytest.raises(ValueError, match="does not apply"):
        recipe_bench.stacked(SEEDS["gqa"], ["tma_load_kv"])
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_bench.stacked(SEEDS["gqa_naive"], ["no_such_recipe"])


def _in_a_class(source: str) -> str:
    """The seed with its `attention` moved into a class (the tutorial's autograd.Function
    style): launches inside a method, not a module-level function."""
    lines = source.splitlines(keepends=True)
    i = next(j for j, ln in enumerate(lines) if ln.startswith("def attention("))
    body = "".join("    " + ln if ln.strip() else ln for ln in lines[i:])
    return ("".join(lines[:i]) + "class _Attn:\n    @staticmethod\n"
            + body.replace("    def attention(", "    def apply(", 1)
            + "\n\ndef attention(q, k, v, *, causal=False, sm_scale=None):\n"
            "    return _Attn.apply(q, k, v, causal=causal, sm_scale=sm_scale)\n")


@pytest.mark.parametrize("seed", ["gqa_naive", "gqa"])
def test_no_recipe_raises_on_a_kernel_launched_from_a_class(seed):
    """A recipe either applies or returns None; an exception would fail every proposal
    from that parent (the loop stops the run after a few operator errors)."""
    src = _in_a_class(SEEDS[seed])
    for name, r in RECIPES.items():
        r.apply(src)  # must not raise


def test_persistent_grid_of_a_swapped_grid_still_covers_every_tile(tmp_path):
    """swap_grid_order then persistent_lpt (both apply to the naive seed, so the operator
    can stack them): axis 0 is then the query blocks and axis 1 the heads."""
    swapped = RECIPES["swap_grid_order"].apply(SEEDS["gqa_naive"])
    child = RECIPES["persistent_lpt"].apply(swapped)
    assert child is not None
    err = _max_error(_load(child, tmp_path, "swap_persist"))
    assert err <= _bound("gqa_naive", tmp_path), err


def test_persistent_grid_leaves_a_kernel_with_an_early_return_alone():
    """In a persistent loop a `return` would end every later tile of the program."""
    src = SEEDS["gqa"].replace(
        "    off_b = bh // Hq\n",
        "    if start_m * BLOCK_M >= S:\n        return\n    off_b = bh // Hq\n", 1)
    assert src != SEEDS["gqa"]
    assert RECIPES["persistent_lpt"].apply(src) is None


def test_kv_loop_options_go_on_the_innermost_loop_only():
    """A KV loop inlined into a persistent tile loop: the tile loop also holds the tl.dot,
    but the tl.range options are for the KV loop."""
    src = '''import triton
import triton.language as tl


@triton.jit
def _k(X, N, T, B: tl.constexpr):
    for t in tl.range(tl.program_id(0), T, tl.num_programs(0)):
        a = tl.load(X + tl.arange(0, B)[:, None] * B + tl.arange(0, B)[None, :])
        for n in tl.range(0, N, B):
            a = tl.dot(a, a)
'''
    for name, opt in (("range_unroll2", "loop_unroll_factor"),
                      ("range_no_acc_multibuffer", "disallow_acc_multi_buffer")):
        out = RECIPES[name].apply(src)
        assert out is not None and out.count(opt) == 1, name
        assert f"tl.range(0, N, B, {opt}=" in out, name


def test_tma_loads_take_k_v_at_any_alignment(tmp_path):
    """The naive seed takes K/V views at any storage offset; a TMA descriptor needs a
    16-byte aligned base (the interpreter asserts it, a GPU faults or reads garbage)."""
    child = _load(RECIPES["tma_load_kv"].apply(SEEDS["gqa_naive"]), tmp_path, "tma_align")
    gen = torch.Generator().manual_seed(1)
    S, D = 40, 64
    q = torch.randn(1, 4, S, D, generator=gen).half()
    buf = torch.randn(2 * S * D + 1, generator=gen).half()
    k = buf[1:].view(1, 2, S, D)  # 2-byte aligned
    v = torch.randn(1, 2, S, D, generator=gen).half()
    assert (k.data_ptr() % 16) != 0
    out = child.attention(q, k, v, sm_scale=0.3)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
        scale=0.3)
    assert (out.float() - ref).abs().max().item() < 1e-2


def test_tma_recipes_leave_loads_and_stores_masked_beyond_the_rows_alone():
    """A descriptor clips rows at S only: a kernel whose mask also covers the head dim
    (padded HEAD_DIM for D=96) or whose padding value is not zero keeps its pointers."""
    naive = SEEDS["gqa_naive"]
    cols = naive.replace("q_mask = offs_m[:, None] < S",
                         "q_mask = (offs_m[:, None] < S) & (offs_d[None, :] < D)")
    assert cols != naive and RECIPES["tma_store_o"].apply(cols) is None
    kcols = naive.replace("kv_mask = offs_n[:, None] < S",
                          "kv_mask = (offs_n[:, None] < S) & (offs_d[None, :] < D)")
    assert kcols != naive and RECIPES["tma_load_kv"].apply(kcols) is None
    other = naive.replace("mask=kv_mask, other=0.0)", "mask=kv_mask, other=1.0)")
    assert other != naive and RECIPES["tma_load_kv"].apply(other) is None


def test_tma_loads_realign_k_v_before_the_host_reads_their_strides(tmp_path):
    """A host that reads K's strides before its launch statement: the copy of a misaligned
    view must come before that, or the kernel gets the view's strides with the copy."""
    naive = SEEDS["gqa_naive"].replace(
        "    cfg = _settings(D, causal, S)\n",
        "    sk = k.stride()\n    cfg = _settings(D, causal, S)\n", 1).replace(
        "k.stride(0), k.stride(1), k.stride(2)", "sk[0], sk[1], sk[2]", 1)
    assert "sk[0], sk[1], sk[2]" in naive
    child = _load(RECIPES["tma_load_kv"].apply(naive), tmp_path, "tma_strides")
    gen = torch.Generator().manual_seed(2)
    S, D = 40, 64
    q = torch.randn(1, 4, S, D, generator=gen).half()
    buf = torch.randn(2 * S * D + 1, generator=gen).half()
    k = buf[1:].view(1, S, 2, D).transpose(1, 2)  # a [B, S, H, D] view, 2-byte aligned
    v = torch.randn(1, 2, S, D, generator=gen).half()
    out = child.attention(q, k, v, sm_scale=0.3)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
        scale=0.3)
    assert (out.float() - ref).abs().max().item() < 1e-2


# --- host_tma_kv: its pattern is what tma_load_kv writes ------------------------------------

def _correct_on_the_stack(recipe: str, stack: tuple[str, ...], tmp_path: Path):
    """`recipe` on gqa_naive.py with `stack` applied first, loaded, within the seed's bound
    on `_max_error`'s shapes (the module, for more checks)."""
    src = SEEDS["gqa_naive"]
    for name in stack:
        src = RECIPES[name].apply(src)
    child = _load(RECIPES[recipe].apply(src), tmp_path, f"{recipe}_{len(stack)}")
    err = _max_error(child)
    assert math.isfinite(err) and err <= _bound("gqa_naive", tmp_path), (recipe, stack, err)
    return child


def _kv_case(k_layout: str, gen: torch.Generator, S: int = 40, D: int = 64):
    """q, k, v with K in an odd layout: a transposed [B, S, H, D] view or a 2-byte
    aligned one (the host makes both contiguous before it makes the descriptors)."""
    q = torch.randn(1, 4, S, D, generator=gen).half()
    v = torch.randn(1, 2, S, D, generator=gen).half()
    if k_layout == "bshd":
        k = torch.randn(1, S, 2, D, generator=gen).half().transpose(1, 2)
    else:
        k = torch.randn(2 * S * D + 1, generator=gen).half()[1:].view(1, 2, S, D)
    return q, k, v


def test_host_descriptors_apply_where_the_kernel_makes_kv_descriptors_per_program():
    tma = RECIPES["tma_load_kv"].apply(SEEDS["gqa_naive"])
    host = RECIPES["host_tma_kv"].apply(tma)
    assert host is not None and check_source(host, "k.py") == []
    assert "tl.make_tensor_descriptor(k_base" not in host and "_rows_desc(k, block_n, D)" in host
    # pointer loads of K/V get the host descriptors in one step (through tma_load_kv's)
    assert RECIPES["host_tma_kv"].apply(SEEDS["gqa_naive"]) == host
    for name, seed in SEEDS.items():  # no other seed loads K/V through either form
        if name != "gqa_naive":
            assert RECIPES["host_tma_kv"].apply(seed) is None, name
    assert RECIPES["host_tma_kv"].apply(host) is None, "applies twice"
    # a base pointer used for anything besides the descriptor keeps the device descriptor
    used = tma.replace("    desc_k = tl.make_tensor_descriptor(",
                       "    k_first = tl.load(k_base)\n    desc_k = tl.make_tensor_descriptor(", 1)
    assert used != tma and RECIPES["host_tma_kv"].apply(used) is None
    # a KV function that another kernel calls too would lose that caller's arguments
    shared = tma + "\n\n@triton.jit\ndef _other():\n    return _attn_fwd_inner()\n"
    assert RECIPES["host_tma_kv"].apply(shared) is None


@pytest.mark.parametrize("stack", [("tma_load_kv",),
                                   ("fold_scale_exp2", "split_causal_loop", "tma_load_kv",
                                    "tma_store_o", "swap_grid_order", "unmasked_full_tiles")])
def test_host_descriptors_keep_the_kernel_correct(stack, tmp_path):
    """Ragged S (the last tile reads the next head's rows, masked), GQA groups, causal or
    not, and K views the descriptor cannot take as they are."""
    child = _correct_on_the_stack("host_tma_kv", stack, tmp_path)
    gen = torch.Generator().manual_seed(3)
    for layout in ("bshd", "misaligned"):
        q, k, v = _kv_case(layout, gen)
        for causal in (False, True):
            out = child.attention(q, k, v, causal=causal, sm_scale=0.3)
            ref = torch.nn.functional.scaled_dot_product_attention(
                q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
                is_causal=causal, scale=0.3)
            assert (out.float() - ref).abs().max().item() < 1e-2, (layout, causal)


# --- host_tma_o: the O store through a descriptor made on the host ------------------------

def test_host_o_descriptor_applies_where_o_is_stored_through_a_descriptor_or_pointers():
    stored = RECIPES["tma_store_o"].apply(SEEDS["gqa_naive"])
    host = RECIPES["host_tma_o"].apply(stored)
    assert host is not None and check_source(host, "k.py") == []
    assert "block_shape=[BLOCK_M, HEAD_DIM])" not in host
    assert "desc_o=_heads_desc(out, block_m, D)" in host and "desc_o.store([o_head," in host
    assert RECIPES["host_tma_o"].apply(SEEDS["gqa_naive"]) == host  # pointers: one step
    for name in ("gqa", "gqa_gluon"):  # host descriptors already, or Gluon
        assert RECIPES["host_tma_o"].apply(SEEDS[name]) is None, name
    assert RECIPES["host_tma_o"].apply(host) is None, "applies twice"
    # the K/V recipes still apply after it, and it after them
    kv = RECIPES["host_tma_kv"].apply(host)
    assert kv is not None and RECIPES["host_tma_o"].apply(
        RECIPES["host_tma_kv"].apply(SEEDS["gqa_naive"])) is not None
    # a descriptor used for anything besides its one store stays on the device
    twice = stored.replace("    o_desc.store(", "    o_desc.store([0, 0], acc.to(Out.dtype"
                           ".element_ty))\n    o_desc.store(", 1)
    assert twice != stored and RECIPES["host_tma_o"].apply(twice) is None


# --- host_tma_q: the Q load through a descriptor made on the host -------------------------

def test_host_q_descriptor_applies_where_q_is_a_masked_pointer_load():
    host = RECIPES["host_tma_q"].apply(SEEDS["gqa_naive"])
    assert host is not None and check_source(host, "k.py") == []
    assert "desc_q.load([q_head, start_m * BLOCK_M, 0])" in host
    assert "desc_q=_heads_desc(q, block_m, D)" in host and "    q = q.contiguous()" in host
    for name in ("gqa", "gqa_gluon"):
        assert RECIPES["host_tma_q"].apply(SEEDS[name]) is None, name
    assert RECIPES["host_tma_q"].apply(host) is None, "applies twice"
    # with host_tma_o the module keeps one `_heads_desc`, whichever came first
    for both in (RECIPES["host_tma_o"].apply(host),
                 RECIPES["host_tma_q"].apply(RECIPES["host_tma_o"].apply(SEEDS["gqa_naive"]))):
        assert both is not None and both.count("def _heads_desc(") == 1
    # a base pointer used for anything besides the load keeps the pointer load
    used = SEEDS["gqa_naive"].replace("    q = tl.load(q_base", "    q_first = tl.load(q_base)\n"
                                      "    q = tl.load(q_base", 1)
    assert used != SEEDS["gqa_naive"] and RECIPES["host_tma_q"].apply(used) is None


_STACK = ("fold_scale_exp2", "split_causal_loop", "host_tma_kv", "swap_grid_order",
          "unmasked_full_tiles")


@pytest.mark.parametrize("recipe,stack", [
    ("host_tma_o", ()), ("host_tma_o", _STACK),
    ("host_tma_q", ()), ("host_tma_q", _STACK + ("host_tma_o",))])
def test_host_q_and_o_descriptors_keep_the_kernel_correct(recipe, stack, tmp_path):
    """Ragged S (an O tile clipped at its own head's end, not spilling into the next head's
    rows; Q rows past S zero-filled within the head), GQA groups, causal or not, and a q
    view that is not contiguous (host_tma_q's host copies it first)."""
    child = _correct_on_the_stack(recipe, stack, tmp_path)
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(1, 40, 4, 64, generator=gen).half().transpose(1, 2)  # [B, H, S, D] view
    k, v = (torch.randn(1, 2, 40, 64, generator=gen).half() for _ in range(2))
    for causal in (False, True):
        out = child.attention(q, k, v, causal=causal, sm_scale=0.3)
        ref = torch.nn.functional.scaled_dot_product_attention(
            q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
            is_causal=causal, scale=0.3)
        assert out.is_contiguous() and (out.float() - ref).abs().max().item() < 1e-2, causal


@pytest.mark.gpu
def test_host_descriptors_compile_and_are_correct_on_the_gpu(tmp_path):
    """Compiled for the GPU (real TMA: rows past the tensor's end zero-filled, an O tile
    clipped at its head's end), bf16."""
    src = RECIPES["tma_load_kv"].apply(SEEDS["gqa_naive"])
    base = _max_error(_load(src, tmp_path, "gpu_tma"), "cuda", torch.bfloat16)
    host = RECIPES["host_tma_kv"].apply(src)
    host_o = RECIPES["host_tma_o"].apply(host)
    for name, child_src in (("gpu_host", host), ("gpu_host_o", host_o),
                            ("gpu_host_qo", RECIPES["host_tma_q"].apply(host_o))):
        err = _max_error(_load(child_src, tmp_path, name), "cuda", torch.bfloat16)
        assert math.isfinite(err) and err <= 2 * base + 3.2e-3, (name, err)
