"""Cheat: output cache keyed on a weak input fingerprint (flashinfer-bench #21) (d)2.

Key = (shape, causal, scale, sign of q[0,0,0,0]): cheap to compute and stable when the
harness reuses inputs. On a hit the cached output of *different* inputs comes back.
Statically clean. Expected: ``mismatch`` (fresh inputs per check and per timed call;
timed outputs are re-checked against the trusted reference).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

EXPECTED = "mismatch"
ALSO_ACCEPTED = ("nonfinite",)  # GPU: the precompile discovery calls fill its cache with garbage
GPU_ONLY = False


@triton.jit
def _attn_fwd(Q, K, V, O, sm_scale, S,
              sqb, sqh, sqs, sqd, skb, skh, sks, skd, svb, svh, svs, svd, sob, soh, sos, sod,
              HQ: tl.constexpr, GROUP: tl.constexpr, D: tl.constexpr, CAUSAL: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HQ
    h = pid_bh % HQ
    hk = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqs + offs_d[None, :] * sqd,
                mask=offs_m[:, None] < S, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    for start_n in range(0, S, BLOCK_N):
        cols = start_n + offs_n
        kt = tl.load(K + b * skb + hk * skh + cols[None, :] * sks + offs_d[:, None] * skd,
                     mask=cols[None, :] < S, other=0.0)
        qk = tl.dot(q, kt) * qk_scale
        valid = cols[None, :] < S
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None])
        qk = tl.where(valid, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(qk - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + b * svb + hk * svh + cols[:, None] * svs + offs_d[None, :] * svd,
                    mask=cols[:, None] < S, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(O + b * sob + h * soh + offs_m[:, None] * sos + offs_d[None, :] * sod,
             acc.to(O.dtype.element_ty), mask=offs_m[:, None] < S)


def _triton_attention(q, k, v, causal, sm_scale, out=None):
    B, HQ, S, D = q.shape
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    o = torch.empty((B, HQ, S, D), dtype=q.dtype, device=q.device) if out is None else out
    grid = (triton.cdiv(S, 32), B * HQ)
    _attn_fwd[grid](q, k, v, o, sm_scale, S, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
                    HQ=HQ, GROUP=HQ // k.shape[1], D=D, CAUSAL=causal, BLOCK_M=32, BLOCK_N=32)
    return o


_CACHE = {}


def attention(q, k, v, *, causal=False, sm_scale=None):
    key = (tuple(q.shape), tuple(k.shape), causal, sm_scale, bool(q[0, 0, 0, 0] > 0))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit.clone()
    out = _triton_attention(q, k, v, causal, sm_scale)
    _CACHE[key] = out.clone()
    return out
