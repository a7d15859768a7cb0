"""Seed kernel of the soft-capping example target (examples/softcap_target.py).

A plain FlashAttention-2 style forward: grid (B * Hq, cdiv(S, BLOCK_M)), one loop over
key blocks, online softmax in fp32, and the cap ``c * tanh(s / c)`` applied to every
score (tanh written as ``1 - 2 / (exp(2x) + 1)``, exact at both saturations).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

CONFIG = {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4}
SEARCH_SPACE = {"BLOCK_M": [16, 32, 64, 128], "BLOCK_N": [16, 32, 64, 128], "num_warps": [4, 8]}


@triton.jit
def _softcap_fwd(Q, K, V, O, sm_scale, cap, S,
                 sqb, sqh, sqs, sqd, skb, skh, sks, skd, svb, svh, svs, svd, sob, soh, sos,
                 Hq, G: tl.constexpr, CAUSAL: tl.constexpr, D: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    bh = tl.program_id(0)
    b = bh // Hq
    h = bh % Hq
    kvh = h // G
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqs + offs_d[None, :] * sqd,
                mask=offs_m[:, None] < S, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, (tl.program_id(1) + 1) * BLOCK_M)
    for start in range(0, hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        k = tl.load(K + b * skb + kvh * skh + offs_n[None, :] * sks + offs_d[:, None] * skd,
                    mask=offs_n[None, :] < S, other=0.0)
        s = tl.dot(q, k) * sm_scale
        s = cap * (1.0 - 2.0 / (tl.exp(2.0 * s / cap) + 1.0))
        ok = offs_n[None, :] < S
        if CAUSAL:
            ok = ok & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        v = tl.load(V + b * svb + kvh * svh + offs_n[:, None] * svs + offs_d[None, :] * svd,
                    mask=offs_n[:, None] < S, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(O + b * sob + h * soh + offs_m[:, None] * sos + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=offs_m[:, None] < S)


def attention(q, k, v, *, causal=False, sm_scale=None, softcap=30.0):
    B, Hq, S, D = q.shape
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    out = torch.empty((B, Hq, S, D), dtype=q.dtype, device=q.device)
    bm, bn = CONFIG["BLOCK_M"], CONFIG["BLOCK_N"]
    _softcap_fwd[(B * Hq, triton.cdiv(S, bm))](
        q, k, v, out, sm_scale, float(softcap), S,
        *q.stride(), *k.stride(), *v.stride(), out.stride(0), out.stride(1), out.stride(2),
        Hq, G=Hq // k.shape[1], CAUSAL=causal, D=D, BLOCK_M=bm, BLOCK_N=bn,
        num_warps=CONFIG["num_warps"])
    return out
