"""Cheat: degenerate output - mean of V over the keys (d)8a.

Passes allclose(1e-2) with torch.rand inputs (evaluator.md 2.10). Statically clean.
Expected: ``mismatch`` (randn inputs, relative error bound, 2x same-dtype rule).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

EXPECTED = "mismatch"
GPU_ONLY = False


@triton.jit
def _mean_v(V, O, S, svb, svh, svs, sob, soh, sos, HQ: tl.constexpr, GROUP: tl.constexpr,
            D: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // HQ
    h = pid % HQ
    offs_d = tl.arange(0, D)
    acc = tl.zeros([D], dtype=tl.float32)
    for s in range(0, S):
        acc += tl.load(V + b * svb + (h // GROUP) * svh + s * svs + offs_d).to(tl.float32)
    acc = acc / S
    for s0 in range(0, S, BLOCK):
        rows = s0 + tl.arange(0, BLOCK)
        val = tl.zeros([BLOCK, D], dtype=tl.float32) + acc[None, :]
        tl.store(O + b * sob + h * soh + rows[:, None] * sos + offs_d[None, :],
                 val.to(O.dtype.element_ty), mask=rows[:, None] < S)


def attention(q, k, v, *, causal=False, sm_scale=None):
    B, HQ, S, D = q.shape
    o = torch.empty_like(q)
    vc = v.contiguous()
    _mean_v[(B * HQ,)](vc, o, S, vc.stride(0), vc.stride(1), vc.stride(2), o.stride(0), o.stride(1),
                       o.stride(2), HQ=HQ, GROUP=HQ // k.shape[1], D=D, BLOCK=32)
    return o
