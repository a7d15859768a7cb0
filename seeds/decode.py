"""Split-KV decode attention with GQA head packing and a reduction kernel.

Decode reads the whole KV cache to produce a handful of output rows: it is bound by
memory bandwidth, and the work is only B * Hkv * (length / block) tiles. Two ideas
(knowledge/decode-split-kv.md, decode-roofline.md):

* **GQA head packing**: program (b, kv head, split) loads each K/V tile once and
  multiplies it with all ``G * Sq`` query rows of that kv head (the G query heads of
  the group times the Sq new tokens), packed into one ``BLOCK_M``-row tile for
  ``tl.dot`` (rows padded to at least 16). KV traffic drops by G versus one program
  per query head.
* **split-KV** ("flash-decoding"): the cache of each sequence is cut into
  ``num_splits`` ranges processed by separate programs, so B * Hkv * num_splits
  programs fill the GPU even at B = 1. Each writes its partial output (normalised)
  and the log-sum-exp of its rows to an fp32 workspace; ``_combine`` merges the splits
  (weights ``exp(lse_s - max lse)``). With one split the first kernel writes the
  output directly and no reduction runs.

``num_splits`` is chosen on the host from S_max (never from the device lengths: no
synchronisation): enough programs for ``CONFIG["TARGET_PROGRAMS"]``, but at least
``MIN_BLOCKS_PER_SPLIT`` key blocks per split. Splits past a sequence's length see
no keys and write an lse of -inf, which the reduction weighs as zero.

Row r of the packed tile is query head ``kv_head * G + r // Sq``, new token
``i = r % Sq``, which sees keys ``j <= L_b - Sq + i``.

Contract: ``attention(q, k_cache, v_cache, *, cache_seqlens, sm_scale=None)``; q
``[B, Hq, Sq, D]``, caches ``[B, Hkv, S_max, D]`` (fp16/bf16), ``cache_seqlens`` ``[B]``
int32; returns a new tensor like q. Tunables in ``CONFIG`` (read at every call).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

CONFIG = {
    "BLOCK_N": 64,
    "num_warps": 4,
    "num_stages": 2,
    "TARGET_PROGRAMS": 264,
    "MIN_BLOCKS_PER_SPLIT": 4,
    "MAX_SPLITS": 64,
    "COMBINE_WARPS": 4,
}

SEARCH_SPACE = {
    "BLOCK_N": [32, 64, 128],
    "num_warps": [2, 4, 8],
    "num_stages": [1, 2, 3, 4],
    "TARGET_PROGRAMS": [132, 264, 528, 1056],
    "MIN_BLOCKS_PER_SPLIT": [1, 2, 4, 8, 16],
    "MAX_SPLITS": [16, 32, 64, 128],
    "COMBINE_WARPS": [1, 2, 4],
}

_LOG2E = 1.4426950408889634


@triton.jit
def _split_kv(Q, K, V, O, MidO, MidL, Lens, qk_scale,
              sqb, sqh, sqs, skb, skh, sks, svb, svh, svs, sob, soh, sos,
              split_len, NUM_SPLITS,
              G: tl.constexpr, SQ: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr,
              BLOCK_N: tl.constexpr, DIRECT: tl.constexpr):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    L = tl.load(Lens + b)

    offs_m = tl.arange(0, BLOCK_M)  # packed rows: (group head, new token)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < G * SQ
    head = kvh * G + offs_m // SQ
    tok = offs_m % SQ
    limit = L - SQ + tok  # last visible key of each row

    b64 = b.to(tl.int64)
    q_ptrs = Q + b64 * sqb + head[:, None] * sqh + tok[:, None] * sqs + offs_d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)

    lo = split * split_len
    hi = tl.minimum(lo + split_len, L)
    k_base = K + b64 * skb + kvh * skh
    v_base = V + b64 * svb + kvh * svh

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    for start in range(lo, hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        k = tl.load(k_base + offs_n[None, :].to(tl.int64) * sks + offs_d[:, None],
                    mask=n_ok[None, :], other=0.0)
        s = tl.dot(q, k) * qk_scale  # log2 domain
        visible = (offs_n[None, :] <= limit[:, None]) & n_ok[None, :]
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        v = tl.load(v_base + offs_n[:, None].to(tl.int64) * svs + offs_d[None, :],
                    mask=n_ok[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        m_i = m_new

    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    if DIRECT:
        o_ptrs = O + b64 * sob + head[:, None] * soh + tok[:, None] * sos + offs_d[None, :]
        tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])
    else:
        # workspace rows: ((b * Hq + head) * SQ + tok) * NUM_SPLITS + split
        hq = tl.num_programs(1) * G
        mid_row = ((b64 * hq + head) * SQ + tok) * NUM_SPLITS + split
        tl.store(MidO + mid_row[:, None] * D + offs_d[None, :], out, mask=row_ok[:, None])
        lse = tl.where(has, m_i + tl.math.log2(tl.where(has, l_i, 1.0)), float("-inf"))
        tl.store(MidL + mid_row, lse, mask=row_ok)


@triton.jit
def _combine(MidO, MidL, O, sob, soh, sos, Hq, NUM_SPLITS,
             SQ: tl.constexpr, D: tl.constexpr, SPLITS_P2: tl.constexpr):
    row = tl.program_id(0)  # (b * Hq + h) * SQ + tok
    tok = row % SQ
    bh = row // SQ
    h = bh % Hq
    b = bh // Hq
    offs_s = tl.arange(0, SPLITS_P2)
    offs_d = tl.arange(0, D)
    s_ok = offs_s < NUM_SPLITS
    base = row.to(tl.int64) * NUM_SPLITS
    lse = tl.load(MidL + base + offs_s, mask=s_ok, other=float("-inf"))
    m = tl.max(lse, axis=0)
    w = tl.where(s_ok, tl.math.exp2(lse - m), 0.0)
    parts = tl.load(MidO + (base + offs_s)[:, None] * D + offs_d[None, :], mask=s_ok[:, None], other=0.0)
    out = tl.sum(parts * w[:, None], axis=0) / tl.sum(w, axis=0)
    tl.store(O + b.to(tl.int64) * sob + h * soh + tok * sos + offs_d, out.to(O.dtype.element_ty))


def _num_splits(B: int, Hkv: int, S_max: int, block_n: int) -> int:
    blocks = triton.cdiv(S_max, block_n)
    want = triton.cdiv(CONFIG["TARGET_PROGRAMS"], B * Hkv)
    most = max(1, blocks // max(1, CONFIG["MIN_BLOCKS_PER_SPLIT"]))
    return max(1, min(want, most, CONFIG["MAX_SPLITS"]))


def attention(q, k_cache, v_cache, *, cache_seqlens, sm_scale=None):
    B, Hq, Sq, D = q.shape
    Hkv, S_max = k_cache.shape[1], k_cache.shape[2]
    G = Hq // Hkv
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    q, k_cache, v_cache = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k_cache, v_cache))
    lens = cache_seqlens.to(torch.int32)
    out = torch.empty((B, Hq, Sq, D), dtype=q.dtype, device=q.device)
    block_n = CONFIG["BLOCK_N"]
    splits = _num_splits(B, Hkv, S_max, block_n)
    split_len = triton.cdiv(triton.cdiv(S_max, splits), block_n) * block_n
    splits = triton.cdiv(S_max, split_len)
    direct = splits == 1
    if direct:
        mid_o = mid_l = out  # unused
    else:
        mid_o = torch.empty((B * Hq * Sq * splits, D), dtype=torch.float32, device=q.device)
        mid_l = torch.empty((B * Hq * Sq * splits,), dtype=torch.float32, device=q.device)
    block_m = max(16, triton.next_power_of_2(G * Sq))
    _split_kv[(B, Hkv, splits)](
        q, k_cache, v_cache, out, mid_o, mid_l, lens, sm_scale * _LOG2E,
        q.stride(0), q.stride(1), q.stride(2),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        split_len, splits,
        G=G, SQ=Sq, D=D, BLOCK_M=block_m, BLOCK_N=block_n, DIRECT=direct,
        num_warps=CONFIG["num_warps"], num_stages=CONFIG["num_stages"])
    if not direct:
        _combine[(B * Hq * Sq,)](
            mid_o, mid_l, out, out.stride(0), out.stride(1), out.stride(2), Hq, splits,
            SQ=Sq, D=D, SPLITS_P2=triton.next_power_of_2(splits), num_warps=CONFIG["COMBINE_WARPS"])
    return out
