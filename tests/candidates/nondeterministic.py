"""Broken test candidate: every second call nudges one output element by one ulp -- within
the error bound, but not bitwise reproducible (expect `nondeterministic`)."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

_CALLS = [0]
CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2}
SEARCH_SPACE = {"BLOCK_M": [32, 64], "BLOCK_N": [32, 64], "num_warps": [4, 8], "num_stages": [2, 3]}


@triton.jit
def _fwd(Q, K, V, O, qk_scale,
         sqb, sqh, sqs, skb, skh, sks, svb, svh, svs, sob, soh, sos,
         Hq, S, G,
         D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // Hq
    h = pid_bh % Hq
    hk = h // G
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    q_ptrs = Q + b * sqb + h * sqh + offs_m[:, None] * sqs + offs_d[None, :]
    q = tl.load(q_ptrs, mask=offs_m[:, None] < S, other=0.0)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, (pid_m + 1) * BLOCK_M)
    for start in range(0, hi, BLOCK_N):
        cols = start + offs_n
        k = tl.load(K + b * skb + hk * skh + cols[:, None] * sks + offs_d[None, :],
                    mask=cols[:, None] < S, other=0.0)
        v = tl.load(V + b * svb + hk * svh + cols[:, None] * svs + offs_d[None, :],
                    mask=cols[:, None] < S, other=0.0)
        s = tl.dot(q, tl.trans(k)) * qk_scale
        keep = cols[None, :] < S
        if CAUSAL:
            keep = keep & (cols[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    l_i = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_i[:, None]
    o_ptrs = O + b * sob + h * soh + offs_m[:, None] * sos + offs_d[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=offs_m[:, None] < S)


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    B, Hq, S, D = q.shape
    Hkv = k.shape[1]
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    if v.stride(-1) != 1:
        v = v.contiguous()
    o = torch.empty((B, Hq, S, D), dtype=q.dtype, device=q.device)
    grid = (triton.cdiv(S, CONFIG["BLOCK_M"]), B * Hq)
    _fwd[grid](q, k, v, o, sm_scale * 1.4426950408889634,
               q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
               v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
               Hq, S, Hq // Hkv, D=D, BLOCK_M=CONFIG["BLOCK_M"], BLOCK_N=CONFIG["BLOCK_N"],
               CAUSAL=causal, num_warps=CONFIG["num_warps"], num_stages=CONFIG["num_stages"])
    _CALLS[0] += 1
    if _CALLS[0] % 2 == 0:
        o.view(-1)[0] = o.view(-1)[0] * (1.0 + 2.0 ** -9)
    return o
