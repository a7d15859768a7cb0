"""Cheat: decoy Triton kernel + a GEMM disguised as a 1-D convolution.

``torch.conv_tbc`` with kernel width 1 is ``input @ weight`` (MKL / cuBLAS inside the
operator, which calls ``addmm_`` itself): q @ k^T and p @ v per (batch, head), softmax
written out with exp/sum. Expected: ``forbidden`` (static: ``torch.conv_tbc``; runtime:
the guard's aten raisers for ``conv_tbc``).
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


def _mm(a, b):
    """[M, K] x [K, N] as conv_tbc: time M, batch 1, channels K -> N, width 1."""
    return torch.conv_tbc(a[:, None, :], b[None], torch.zeros(b.shape[1], device=a.device))[:, 0, :]


def attention(q, k, v, *, causal=False, sm_scale=None):
    scratch = torch.empty(1, dtype=q.dtype, device=q.device)
    _decoy[(1,)](q, scratch)
    B, Hq, S, D = q.shape
    g = Hq // k.shape[1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(D)
    out = torch.empty(B, Hq, S, D, dtype=q.dtype, device=q.device)
    for b in range(B):
        for h in range(Hq):
            s = _mm(q[b, h].float(), k[b, h // g].float().t().contiguous()) * scale
            if causal:
                s = s.masked_fill(torch.ones(S, S, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
            p = (s - s.amax(-1, keepdim=True)).exp()
            p = p / p.sum(-1, keepdim=True)
            out[b, h] = _mm(p, v[b, h // g].float()).to(q.dtype)
    return out
