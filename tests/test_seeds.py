"""The seed kernels (seeds/*.py) against an fp32 torch math reference.

On CPU the kernels run in the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1) with fp16 inputs (the interpreter's bf16 tl.dot is wrong).
The fast tests cover every validation S in {1, 17, 127} x G in {1, 4, 7, 8} x
D in {64, 128} x causal; the long sequences (1000, 3001) are marked slow; the GPU
test runs the evaluator's full validation set in bf16 and fp16.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import math
import random
from pathlib import Path

import pytest
import torch

from evaluator.static_check import check_source
from evolve.operators.shape_classes import class_settings, class_space, classes

SEEDS_DIR = Path(__file__).resolve().parents[1] / "seeds"
SEEDS = ("gqa_naive.py", "gqa.py", "mha.py")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def load_seed(name: str):
    """A fresh module object per call, so CONFIG edits never leak between tests."""
    path = SEEDS_DIR / name
    spec = importlib.util.spec_from_file_location(f"seed_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(q, k, v, causal: bool, sm_scale: float | None) -> torch.Tensor:
    """Attention in fp32 torch math (einsum + softmax), GQA via repeat_interleave."""
    D = q.shape[-1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(D)
    G = q.shape[1] // k.shape[1]
    qf = q.float()
    kf = k.float().repeat_interleave(G, dim=1)
    vf = v.float().repeat_interleave(G, dim=1)
    s = torch.einsum("bhqd,bhkd->bhqk", qf, kf) * scale
    if causal:
        S = q.shape[2]
        future = torch.ones(S, S, dtype=torch.bool, device=q.device).triu(1)
        s = s.masked_fill(future, float("-inf"))
    return torch.einsum("bhqk,bhkd->bhqd", torch.softmax(s, dim=-1), vf)


def make_inputs(B, Hq, Hkv, S, D, dtype=torch.float16, layout="bhsd", seed=0):
    gen = torch.Generator().manual_seed(seed)

    def one(H):
        if layout == "bshd":  # a [B, S, H, D] tensor seen as [B, H, S, D]: non-contiguous
            t = torch.randn(B, S, H, D, generator=gen).transpose(1, 2)
        else:
            t = torch.randn(B, H, S, D, generator=gen)
        return t.to(dtype=dtype, device=DEVICE)

    return one(Hq), one(Hkv), one(Hkv)


def check(mod, B, Hq, Hkv, S, D, causal, sm_scale=None, layout="bhsd",
          dtype=torch.float16, atol=2e-2):
    q, k, v = make_inputs(B, Hq, Hkv, S, D, dtype, layout)
    copies = [t.clone() for t in (q, k, v)]
    out = mod.attention(q, k, v, causal=causal, sm_scale=sm_scale)
    assert out.shape == q.shape and out.dtype == q.dtype and out.device == q.device
    for t, c in zip((q, k, v), copies):
        assert torch.equal(t, c), "the kernel modified an input"
    ref = reference(q, k, v, causal, sm_scale)
    err = (out.float() - ref).abs().max().item()
    assert math.isfinite(err) and err < atol, (
        f"B={B} Hq={Hq} Hkv={Hkv} S={S} D={D} causal={causal} scale={sm_scale} "
        f"{layout}: max error {err:.4g}")
    return err


# --------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", SEEDS)
def test_seed_passes_static_check_and_declares_config(name):
    source = (SEEDS_DIR / name).read_text()
    assert check_source(source, name) == []
    tree = ast.parse(source)
    assigned = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
    config = ast.literal_eval(assigned["CONFIG"])  # must be a literal dict
    space = ast.literal_eval(assigned["SEARCH_SPACE"])
    assert config
    for cls in classes(config):  # per shape class (evolve/operators/shape_classes.py)
        knobs, allowed = class_settings(config, cls), class_space(space, cls)
        assert set(knobs) == set(allowed), cls
        for key, value in knobs.items():
            assert isinstance(value, (int, float, bool))
            assert value in allowed[key], f"{cls}.{key} = {value} is outside SEARCH_SPACE"


# --------------------------------------------------------------------- fast grid


FAST_S = (1, 17, 127)
GROUPS = (1, 4, 7, 8)


@pytest.mark.parametrize("name", SEEDS)
@pytest.mark.parametrize("S", FAST_S)
def test_seed_fast_validation_grid(name, S):
    """Every S x G x D x causal combination of the short validation sequences."""
    mod = load_seed(name)
    # the mha target has Hq == Hkv (G = 1): the head count adds nothing there, keep it small
    groups = (1, 3) if name == "mha.py" else GROUPS
    for G, D, causal in itertools.product(groups, (64, 128), (False, True)):
        Hkv = G if name == "mha.py" else 1
        check(mod, 1, G, Hkv, S, D, causal)


@pytest.mark.parametrize("name", SEEDS)
def test_seed_batches_kv_heads_scale_and_strides(name):
    mod = load_seed(name)
    check(mod, 3, 2, 2, 17, 128, False, sm_scale=0.3)            # B=3, several kv heads
    check(mod, 2, 8, 2, 33, 64, True, sm_scale=0.2)              # G=4 with Hkv=2
    check(mod, 1, 4, 2, 33, 64, False, sm_scale=0.2, layout="bshd")  # non-contiguous
    check(mod, 1, 2, 2, 17, 64, True, layout="bshd")


@pytest.mark.parametrize("name", SEEDS)
def test_seed_negative_scale(name):
    check(load_seed(name), 1, 2, 1, 17, 64, True, sm_scale=-0.4)


@pytest.mark.parametrize("name", SEEDS)
def test_seed_matches_evaluator_cpu_validation(name):
    from evaluator.targets import get_target

    mod = load_seed(name)
    target = get_target("mha" if name == "mha.py" else "gqa")
    for shape in target.validation_shapes("cpu"):
        check(mod, shape.B, shape.Hq, shape.Hkv, shape.S, shape.D, shape.causal,
              sm_scale=shape.sm_scale, layout=shape.layout)


@pytest.mark.parametrize("name", SEEDS)
def test_random_search_space_configs_stay_correct(name):
    """Configs drawn from SEARCH_SPACE (the offline operator's moves) remain correct."""
    rng = random.Random(f"configs-{name}")
    mod = load_seed(name)
    default = dict(mod.CONFIG)
    for _ in range(3):
        mod.CONFIG.clear()
        for cls in classes(default):
            pick = {k: rng.choice(v) for k, v in class_space(mod.SEARCH_SPACE, cls).items()}
            if cls == "ALL":
                mod.CONFIG.update(pick)
            else:
                mod.CONFIG[cls] = pick
        for D, causal in ((64, True), (128, False), (64, False), (128, True)):
            check(mod, 1, 3, 1, 45, D, causal, sm_scale=0.25)
    mod.CONFIG.clear()
    mod.CONFIG.update(default)


def test_gqa_every_switch_combination_small():
    """Every switch combination (FLAT x HOST_DESC x REVERSE_M), cycling the tile shapes (D=64)."""
    mod = load_seed("gqa.py")
    space = mod.SEARCH_SPACE
    tiles = list(itertools.product(space["D64_C"]["BLOCK_M"], space["D64_C"]["BLOCK_N"]))
    switches = itertools.product(space["D64_C"]["REVERSE_M"], space["D64_C"]["FLAT"],
                                 space["D64_C"]["HOST_DESC"])
    for i, (rev, flat, host) in enumerate(switches):
        bm, bn = tiles[i % len(tiles)]
        both = {"BLOCK_M": bm, "BLOCK_N": bn, "FLAT": flat, "HOST_DESC": host}
        mod.CONFIG["D64_C"].update(both, REVERSE_M=rev)
        mod.CONFIG["D64_NC"].update(both)
        for causal in (False, True):
            check(mod, 1, 2, 1, 100, 64, causal)


# --------------------------------------------------------------------- long sequences


SLOW_CASES = [(1000, 1, 64, False), (1000, 1, 64, True), (1000, 1, 128, False),
              (1000, 1, 128, True), (1000, 7, 64, True), (3001, 1, 64, True),
              (3001, 1, 128, True)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ("gqa.py", "gqa_naive.py"))
@pytest.mark.parametrize("S,G,D,causal", SLOW_CASES)
def test_seed_long_sequences(name, S, G, D, causal):
    check(load_seed(name), 1, G, 1, S, D, causal)


# --------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("name", SEEDS)
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
def test_seed_gpu_full_validation(name, dtype):
    from evaluator.targets import get_target

    mod = load_seed(name)
    target = get_target("mha" if name == "mha.py" else "gqa")
    for shape in target.validation_shapes("cuda"):
        check(mod, shape.B, shape.Hq, shape.Hkv, shape.S, shape.D, shape.causal,
              sm_scale=shape.sm_scale, layout=shape.layout, dtype=dtype, atol=3e-2)
