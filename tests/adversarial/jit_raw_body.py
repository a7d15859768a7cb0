"""Cheat: decorate a torch function with @triton.jit and call its raw Python body (.fn).

The "kernel" uses ``@`` (legal inside a Triton kernel), but ``.fn`` runs the body on torch
tensors, i.e. cuBLAS matmul. Expected: ``forbidden`` (static: .fn; runtime: torch's
__matmul__ / aten mm are guard raisers).
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
def _scores(a, b):
    return a @ b


def attention(q, k, v, *, causal=False, sm_scale=None):
    g = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(g, dim=1).float()
    vv = v.repeat_interleave(g, dim=1).float()
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    s = _scores.fn(q.float(), kk.transpose(-1, -2)) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    p = (s - s.amax(-1, keepdim=True)).exp()
    return _scores.fn(p / p.sum(-1, keepdim=True), vv).to(q.dtype)
