"""Cheat: decoy Triton kernel + torch SDPA (evaluator.md (d)1).

A trivial Triton kernel runs so the file "uses Triton", but the returned output comes
from torch.nn.functional.scaled_dot_product_attention (cuDNN/flash on a GPU).
Expected: ``forbidden`` (static: torch.nn; runtime: the guard replaced SDPA and the aten
SDPA/bmm kernels with raisers).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

EXPECTED = "forbidden"
GPU_ONLY = False
RUNTIME = "forbidden"  # class when the static check is bypassed (runtime guard)


@triton.jit
def _decoy(X, Y):
    tl.store(Y, tl.load(X))


def attention(q, k, v, *, causal=False, sm_scale=None):
    scratch = torch.empty(1, dtype=q.dtype, device=q.device)
    _decoy[(1,)](q, scratch)
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=causal, scale=sm_scale, enable_gqa=True)
