"""Cheat: decoy Triton kernel + torch GEMM through the in-place tensor methods.

``s.baddbmm_(q, k^T)`` and ``o.baddbmm_(p, v)`` run cuBLAS (MKL on the CPU) batched
GEMMs, like ``torch.bmm``, but under another operator name (``aten::baddbmm_``, not
``aten::baddbmm``) and another method name (``baddbmm_``, not ``baddbmm``); softmax is
written out with exp/sum. Expected: ``forbidden`` (static: the in-place GEMM methods;
runtime: the guard's aten raisers cover the in-place and out= overloads too).
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
    B, Hq, S, D = q.shape
    g = Hq // k.shape[1]
    kk = k.repeat_interleave(g, dim=1).float().reshape(B * Hq, S, D)
    vv = v.repeat_interleave(g, dim=1).float().reshape(B * Hq, S, D)
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(D)
    s = torch.zeros(B * Hq, S, S, device=q.device)
    s.baddbmm_(q.float().reshape(B * Hq, S, D), kk.transpose(1, 2), alpha=scale)
    if causal:
        s = s.masked_fill(torch.ones(S, S, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    p = (s - s.amax(-1, keepdim=True)).exp()
    p = p / p.sum(-1, keepdim=True)
    o = torch.zeros(B * Hq, S, D, device=q.device)
    o.baddbmm_(p, vv)
    return o.reshape(B, Hq, S, D).to(q.dtype)
