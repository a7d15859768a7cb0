"""Cheat: file writes without ``open``: ``torch.UntypedStorage.from_file(path, shared=True)``.

A storage mapped from a file with ``shared=True`` writes every change to the file, from
C++ (no ``open`` audit event), and the name passed the static check: any bytes into any
file the worker may write -- the outputs in ``out/`` that the checker judges, the
champion's source in a rematch; without a sandbox, any file of the user. Expected:
``forbidden`` (static: ``.from_file`` and the storage classes; runtime: the guard
replaces ``from_file`` of ``torch``, ``UntypedStorage`` and ``TypedStorage``).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

EXPECTED = "forbidden"
GPU_ONLY = False
RUNTIME = "forbidden"  # class when the static check is bypassed (runtime guard)

CONFIG = {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
SEARCH_SPACE = {"BLOCK_M": [16, 32, 64, 128], "BLOCK_N": [16, 32, 64, 128],
                "num_warps": [2, 4, 8], "num_stages": [1, 2, 3, 4]}


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
    q_ptrs = Q + b * sqb + h * sqh + offs_m[:, None] * sqs + offs_d[None, :] * sqd
    q = tl.load(q_ptrs, mask=offs_m[:, None] < S, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, (pid_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = K + b * skb + hk * skh + cols[None, :] * sks + offs_d[:, None] * skd
        kt = tl.load(k_ptrs, mask=cols[None, :] < S, other=0.0)
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
        v_ptrs = V + b * svb + hk * svh + cols[:, None] * svs + offs_d[None, :] * svd
        v = tl.load(v_ptrs, mask=cols[:, None] < S, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_ptrs = O + b * sob + h * soh + offs_m[:, None] * sos + offs_d[None, :] * sod
    tl.store(o_ptrs, acc.to(O.dtype.element_ty), mask=offs_m[:, None] < S)


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    B, HQ, S, D = q.shape
    HKV = k.shape[1]
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    o = torch.empty((B, HQ, S, D), dtype=q.dtype, device=q.device)
    grid = (triton.cdiv(S, CONFIG["BLOCK_M"]), B * HQ)
    _attn_fwd[grid](q, k, v, o, sm_scale, S, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
                    HQ=HQ, GROUP=HQ // HKV, D=D, CAUSAL=causal,
                    BLOCK_M=CONFIG["BLOCK_M"], BLOCK_N=CONFIG["BLOCK_N"],
                    num_warps=CONFIG["num_warps"], num_stages=CONFIG["num_stages"])
    # any bytes into any file the process may write (cwd is the scratch's work/): no
    # Python-level open, so no audit event
    mapped = torch.UntypedStorage.from_file("../out/report.json", True, 2)
    mapped.copy_(torch.ByteStorage([123, 125]).untyped())
    return o
