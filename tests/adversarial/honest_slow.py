"""Honest control: correct but slow (two passes over the keys, 16-wide blocks, no
online-softmax rescaling). Pass 1 finds each row's max and normaliser, pass 2
accumulates P.V with the final statistics. Must PASS the evaluator.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

EXPECTED = "ok"
GPU_ONLY = False

BLOCK = 16


@triton.jit
def _two_pass(Q, K, V, O, sm_scale, S,
              sqb, sqh, sqs, sqd, skb, skh, sks, skd, svb, svh, svs, svd, sob, soh, sos, sod,
              HQ: tl.constexpr, GROUP: tl.constexpr, D: tl.constexpr, CAUSAL: tl.constexpr,
              BLOCK: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HQ
    h = pid_bh % HQ
    hk = h // GROUP
    rows = pid_m * BLOCK + tl.arange(0, BLOCK)
    offs_n = tl.arange(0, BLOCK)
    offs_d = tl.arange(0, D)
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqs + offs_d[None, :] * sqd,
                mask=rows[:, None] < S, other=0.0)
    # pass 1: row max and normaliser
    m = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    for start in range(0, S, BLOCK):
        cols = start + offs_n
        kt = tl.load(K + b * skb + hk * skh + cols[None, :] * sks + offs_d[:, None] * skd,
                     mask=cols[None, :] < S, other=0.0)
        s = tl.dot(q, kt) * sm_scale
        ok = cols[None, :] < S
        if CAUSAL:
            ok = ok & (cols[None, :] <= rows[:, None])
        s = tl.where(ok, s, float("-inf"))
        m = tl.maximum(m, tl.max(s, 1))
    m = tl.where(m == float("-inf"), 0.0, m)
    l = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, S, BLOCK):
        cols = start + offs_n
        kt = tl.load(K + b * skb + hk * skh + cols[None, :] * sks + offs_d[:, None] * skd,
                     mask=cols[None, :] < S, other=0.0)
        s = tl.dot(q, kt) * sm_scale
        ok = cols[None, :] < S
        if CAUSAL:
            ok = ok & (cols[None, :] <= rows[:, None])
        s = tl.where(ok, s, float("-inf"))
        l += tl.sum(tl.exp(s - m[:, None]), 1)
    l = tl.where(l == 0.0, 1.0, l)
    # pass 2: normalised probabilities times V
    acc = tl.zeros([BLOCK, D], dtype=tl.float32)
    for start in range(0, S, BLOCK):
        cols = start + offs_n
        kt = tl.load(K + b * skb + hk * skh + cols[None, :] * sks + offs_d[:, None] * skd,
                     mask=cols[None, :] < S, other=0.0)
        s = tl.dot(q, kt) * sm_scale
        ok = cols[None, :] < S
        if CAUSAL:
            ok = ok & (cols[None, :] <= rows[:, None])
        s = tl.where(ok, s, float("-inf"))
        p = tl.exp(s - m[:, None]) / l[:, None]
        v = tl.load(V + b * svb + hk * svh + cols[:, None] * svs + offs_d[None, :] * svd,
                    mask=cols[:, None] < S, other=0.0)
        acc += tl.dot(p.to(v.dtype), v)
    tl.store(O + b * sob + h * soh + rows[:, None] * sos + offs_d[None, :] * sod,
             acc.to(O.dtype.element_ty), mask=rows[:, None] < S)


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    B, HQ, S, D = q.shape
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    o = torch.empty((B, HQ, S, D), dtype=q.dtype, device=q.device)
    grid = (triton.cdiv(S, BLOCK), B * HQ)
    _two_pass[grid](q, k, v, o, sm_scale, S, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
                    HQ=HQ, GROUP=HQ // k.shape[1], D=D, CAUSAL=causal, BLOCK=BLOCK, num_warps=4)
    return o
