"""Plain decode attention: one program per (sequence, query head), no split, no packing.

The deliberately simple starting point of a ``decode`` run:

* grid ``(B, Hq)``; program (b, h) reads kv head ``h // G`` (``G = Hq // Hkv``),
* for each of the ``Sq`` new query rows in turn, it streams the sequence's valid keys
  ``j <= L_b - Sq + i`` in ``BLOCK_N`` blocks through an fp32 online softmax,
* the scores are an elementwise product and a row sum (no ``tl.dot``: one query row),
* every query head of a GQA group reads the same K/V again (G times the KV traffic),
* with few sequences and heads most SMs idle: B * Hq programs, each walking the whole
  cache serially (split-KV fixes that; see knowledge/decode-split-kv.md).

Contract: ``attention(q, k_cache, v_cache, *, cache_seqlens, sm_scale=None)`` with q
``[B, Hq, Sq, D]``, caches ``[B, Hkv, S_max, D]`` (fp16/bf16), ``cache_seqlens`` ``[B]``
int32; returns a new tensor like q. Tunables live in ``CONFIG`` (read at every call).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

CONFIG = {
    "BLOCK_N": 64,
    "num_warps": 4,
    "num_stages": 3,  # Triton's default: the loads of the next key block are in flight
}

SEARCH_SPACE = {
    "BLOCK_N": [32, 64, 128, 256],
    "num_warps": [1, 2, 4, 8],
    "num_stages": [1, 2, 3, 4, 5],
}


@triton.jit
def _decode_naive(Q, K, V, O, Lens, sm_scale,
                  sqb, sqh, sqs, skb, skh, sks, svb, svh, svs, sob, soh, sos,
                  G: tl.constexpr, SQ: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // G
    L = tl.load(Lens + b)
    offs_d = tl.arange(0, D)
    k_base = K + b.to(tl.int64) * skb + kvh * skh
    v_base = V + b.to(tl.int64) * svb + kvh * svh
    for i in range(SQ):
        q = tl.load(Q + b.to(tl.int64) * sqb + h * sqh + i * sqs + offs_d).to(tl.float32)
        limit = L - SQ + i  # the last visible key of this row
        m_i = tl.full([1], float("-inf"), tl.float32)
        l_i = tl.zeros([1], tl.float32)
        acc = tl.zeros([D], tl.float32)
        for start in range(0, limit + 1, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            valid = offs_n <= limit
            k = tl.load(k_base + offs_n[:, None].to(tl.int64) * sks + offs_d[None, :],
                        mask=valid[:, None], other=0.0).to(tl.float32)
            s = tl.sum(k * q[None, :], axis=1) * sm_scale
            s = tl.where(valid, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=0))
            p = tl.exp(s - m_new)
            alpha = tl.exp(m_i - m_new)
            v = tl.load(v_base + offs_n[:, None].to(tl.int64) * svs + offs_d[None, :],
                        mask=valid[:, None], other=0.0).to(tl.float32)
            acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
            l_i = l_i * alpha + tl.sum(p, axis=0)
            m_i = m_new
        out = acc / l_i
        tl.store(O + b.to(tl.int64) * sob + h * soh + i * sos + offs_d, out.to(O.dtype.element_ty))


def attention(q, k_cache, v_cache, *, cache_seqlens, sm_scale=None):
    B, Hq, Sq, D = q.shape
    Hkv = k_cache.shape[1]
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    # the kernel assumes a unit stride along D
    q, k_cache, v_cache = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k_cache, v_cache))
    lens = cache_seqlens.to(torch.int32)
    out = torch.empty((B, Hq, Sq, D), dtype=q.dtype, device=q.device)
    _decode_naive[(B, Hq)](
        q, k_cache, v_cache, out, lens, sm_scale,
        q.stride(0), q.stride(1), q.stride(2),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        G=Hq // Hkv, SQ=Sq, D=D, BLOCK_N=CONFIG["BLOCK_N"], num_warps=CONFIG["num_warps"],
        num_stages=CONFIG["num_stages"])
    return out
