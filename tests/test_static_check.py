"""The static check: no false positives on honest Triton code, every rule fires on its cheat."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator.static_check import Violation, check_source

ROOT = Path(__file__).resolve().parent.parent

HONEST_FILES = sorted([*ROOT.glob("seeds/*.py"), *ROOT.glob("tests/adversarial/honest_*.py"),
                       *ROOT.glob("tests/candidates/honest*.py")])

# Idioms honest kernels use (FA tutorial, TMA descriptors, autotune, device queries ...).
HONEST_IDIOMS = '''
from __future__ import annotations
import math
import functools
from dataclasses import dataclass
from typing import Optional
import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

CONFIG = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3}
SEARCH_SPACE = {"BLOCK_M": [64, 128], "BLOCK_N": [32, 64, 128]}


@dataclass
class Tiles:
    m: int
    n: int


def _configs():
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m in (64, 128) for n in (32, 64) for w in (4, 8) for s in (2, 3)]


@triton.autotune(configs=_configs(), key=["S", "D"])
@triton.jit
def _fwd(Q, K, V, O, S, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    offs = tl.arange(0, BLOCK_M)
    q = tl.load(Q + offs[:, None] * D + tl.arange(0, D)[None, :])
    k = tl.load(K + offs[:, None] * D + tl.arange(0, D)[None, :])
    s = q @ tl.trans(k)
    s = tl.softmax(s)
    acc = tl.dot(s.to(tl.float16), q)
    acc @= acc
    tl.store(O + offs[:, None] * D + tl.arange(0, D)[None, :], acc.to(O.dtype.element_ty))


@functools.lru_cache(maxsize=None)
def _is_hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


def _alloc(size: int, alignment: int, stream: Optional[int]):
    return torch.empty(size, device="cuda", dtype=torch.int8)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              sm_scale: float | None = None) -> torch.Tensor:
    B, H, S, D = q.shape
    id = 3                       # shadowing a harmless builtin is fine
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(D)
    o = torch.empty_like(q)
    z = torch.zeros((B, H, S), dtype=torch.float32, device=q.device)
    q = q.contiguous()
    strides = (*q.stride(), *k.stride())
    props = torch.cuda.get_device_properties(q.device) if q.is_cuda else None
    n_sm = getattr(props, "multi_processor_count", 1)
    if _is_hopper():
        triton.set_allocator(_alloc)
        desc = TensorDescriptor.from_tensor(q, [64, D])
    try:
        grid = lambda meta: (triton.cdiv(S, meta["BLOCK_M"]), B * H)
        _fwd[grid](q, k, v, o, S, D)
    finally:
        pass
    return o
'''


@pytest.mark.parametrize("path", HONEST_FILES, ids=lambda p: p.name)
def test_honest_files_are_clean(path: Path) -> None:
    assert check_source(path.read_text(), path.name) == []


def test_there_are_honest_files() -> None:
    names = {p.name for p in HONEST_FILES}
    assert {"honest_plain.py", "honest_slow.py"} <= names


def test_honest_idioms_are_clean() -> None:
    assert check_source(HONEST_IDIOMS) == []


CHEATS = [
    ("import", "import os"),
    ("import", "import ctypes"),
    ("import", "from subprocess import run"),
    ("import", "import threading"),
    ("import", "import socket"),
    ("import", "import gc"),
    ("import", "import inspect"),
    ("import", "import importlib"),
    ("import", "import pickle"),
    ("import", "import time"),
    ("import", "import evaluator.guard"),
    ("import", "from evaluator import evaluate"),
    ("import", "import flash_attn"),
    ("import", "import xformers.ops"),
    ("import", "import torch.nn.functional as F"),
    ("import", "from torch.nn.attention.flex_attention import flex_attention"),
    ("import", "import triton.testing"),
    ("import", "from . import helper"),
    ("import", "from torch import *"),
    ("import", "from torch import os"),
    ("name", "import torch\ny = torch.matmul(a, b)"),
    ("name", "import torch\ny = torch.bmm(a, b)"),
    ("name", "import torch\ny = torch.einsum('ij,jk', a, b)"),
    ("name", "import torch\ny = torch.softmax(a, -1)"),
    ("name", "import torch\ny = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)"),
    ("name", "import torch\ny = torch._C._nn.linear(a, b)"),
    ("name", "import torch\ns = torch.cuda.Stream()"),
    ("name", "import torch\nwith torch.cuda.stream(s):\n    pass"),
    ("name", "import torch\ntorch.cuda.set_stream(s)"),
    ("name", "import torch\ng = torch.cuda.CUDAGraph()"),
    ("name", "import torch\ntorch.set_num_threads(1)"),
    ("name", "import torch\nx = torch.backends.cuda.sdp_kernel"),
    ("name", "import typing\nm = typing.sys.modules"),
    ("name", "import torch\nc = torch.cuda\ne = c.Event"),
    ("name", "import operator\ny = operator.matmul(a, b)"),
    ("import", "from torch import matmul"),
    ("method", "y = q.matmul(k)"),
    ("method", "y = s.softmax(-1)"),
    ("method", "key = q.data_ptr()"),
    ("method", "y = kernel.fn(q, k)"),
    ("method", "v = q._version"),
    ("matmul", "y = q @ k"),
    ("matmul", "q @= k"),
    ("getattr", "import torch\nf = getattr(torch, 'soft' + 'max')"),
    ("getattr", "f = getattr(obj, name)"),
    ("name", "import torch\nf = getattr(torch.nn, 'functional')"),
    ("method", "f = getattr(q, 'softmax')"),
    ("builtin", "eval('1')"),
    ("builtin", "exec('x = 1')"),
    ("builtin", "c = compile('1', 'f', 'eval')"),
    ("builtin", "m = __import__('os')"),
    ("builtin", "open('/tmp/x', 'w').write('1')"),
    ("builtin", "g = globals()"),
    ("builtin", "setattr(obj, 'x', 1)"),
    ("builtin", "k = id(q)"),
    ("dunder", "g = f.__globals__"),
    ("dunder", "s = ().__class__.__bases__[0].__subclasses__()"),
    ("dunder", "c = f.__code__"),
    ("builtin", "b = __builtins__"),
    ("try-except", "try:\n    x = 1\nexcept Exception:\n    x = 2"),
    ("subclass", "import torch\nclass T(torch.Tensor):\n    pass"),
    ("subclass", "class T(Base, metaclass=Meta):\n    pass"),
    ("dunder-def", "class T:\n    def __torch_function__(self, *a):\n        pass"),
    ("dunder-def", "def __getattr__(name):\n    return 1"),
    ("patch", "import torch\ntorch.cuda.Event.elapsed_time = lambda s, e: 0.0"),
    ("patch", "import triton\ntriton.jit = None"),
    ("patch", "cfg.x = 1"),
    ("dynamic", "T = type('T', (object,), {})"),
]


@pytest.mark.parametrize("rule,source", CHEATS, ids=[f"{r}:{s.splitlines()[-1][:40]}" for r, s in CHEATS])
def test_cheat_is_flagged(rule: str, source: str) -> None:
    found = check_source(source)
    assert found, f"not flagged: {source!r}"
    assert rule in {v.rule for v in found}, found
    assert all(isinstance(v, Violation) and v.line >= 1 and v.message for v in found)


def test_violation_points_at_the_line() -> None:
    found = check_source("import torch\n\n\nx = torch.bmm(a, b)\n")
    assert [(v.rule, v.line) for v in found] == [("name", 4)]


def test_unparsable_and_oversized_sources_are_violations() -> None:
    assert check_source("def (:\n")[0].rule == "syntax"
    assert check_source("x = 1\n" * 100_000)[0].rule == "size"


def test_matmul_allowed_only_inside_triton_kernels() -> None:
    src = "import triton\n@triton.jit\ndef k(a, b):\n    return a @ b\ndef f(a, b):\n    return a @ b\n"
    assert [(v.rule, v.line) for v in check_source(src)] == [("matmul", 6)]


@pytest.mark.parametrize("source", [
    "import functools, torch\nf = functools.reduce(getattr, ['nn', 'functional'], torch)",
    "t = type\nX = t('X', (object,), {})",
    "y = q.dot(k)",
    "y = q.inner(k)",
    "f = gen.gi_frame.f_back",
])
def test_indirect_routes_are_flagged(source: str) -> None:
    assert check_source(source), source
