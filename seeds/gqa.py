"""FlashAttention-2 style forward kernel for grouped-query attention, tuned for Hopper.

What makes it fast (see knowledge/ and docs/architecture.md for the contract):

* tensor descriptors (TMA on Hopper) built once on the host (``TensorDescriptor``
  kernel arguments, ``HOST_DESC_*``; building them in every program with
  ``tl.make_tensor_descriptor`` is the other setting and costs 5-14 % at short
  sequences); Q/K/V/O are addressed as 3-D ``[B*H, S, D]`` tensors so a ragged last
  tile is zero-padded per sequence (optionally the flattened 2-D ``[B*H*S, D]`` view
  for the loads, ``FLAT_*``); the same path runs in the Triton interpreter on CPU
  (no pointer fallback is needed);
* the softmax scale folded into one FMA with ``exp2`` (``qk_scale = sm_scale*log2 e``);
* causal attention in two loops: unmasked tiles left of the diagonal, then the
  masked diagonal band; fully masked tiles are never visited;
* per-shape-class (head dim, causal) tile sizes, warps and pipeline stages in
  ``CONFIG``;
* an L2-friendly 1-D launch order: all query tiles of one head are adjacent and
  the query heads of one GQA group (``kv_head = q_head // G``) are adjacent, so
  K/V tiles are re-read from L2.

Contract: ``attention(q, k, v, *, causal=False, sm_scale=None)``; q ``[B, Hq, S, D]``,
k/v ``[B, Hkv, S, D]``, fp16/bf16, any strides; returns a new tensor like q.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

# Settings per shape class. A class key is tokens joined by "_": "D<d>" head dim <= d,
# "C" / "NC" causal or not, "S<s>" sequence length <= s (no S token: any length); a shape
# takes the matching class with the tightest bounds (`_settings`). Knobs:
# FLAT: flattened 2-D [B*H*S, D] descriptors for the loads (else 3-D [B*H, S, D]);
# HOST_DESC: descriptors built on the host (TensorDescriptor kernel arguments) instead of
# in every program with tl.make_tensor_descriptor (on by default: +5..14 % per class on the
# H200/H100 sweeps, most at S=1024 where each program is short; benchmarks/results/);
# REVERSE_M: causal only, launch the longest query rows of a head first;
# PERSIST: non-causal, in-kernel descriptors only: 0 = one program per query tile, k = k
# programs per SM looping over the tiles (H200: +13 % at D=64 S=1024 over in-kernel
# descriptors, -30..-50 % at D=128; host descriptors without it did better).
CONFIG = {
    "D64_NC": {"BLOCK_M": 64, "BLOCK_N": 64, "WARPS": 4, "FLAT": 1, "HOST_DESC": 1,
               "PERSIST": 0, "STAGES": 4},
    "D64_C": {"BLOCK_M": 64, "BLOCK_N": 64, "WARPS": 4, "FLAT": 0, "HOST_DESC": 1,
              "REVERSE_M": 1, "STAGES": 3},
    "D128_NC": {"BLOCK_M": 128, "BLOCK_N": 64, "WARPS": 4, "FLAT": 0, "HOST_DESC": 1,
                "PERSIST": 0, "STAGES": 2},
    "D128_C": {"BLOCK_M": 128, "BLOCK_N": 64, "WARPS": 4, "FLAT": 0, "HOST_DESC": 1,
               "REVERSE_M": 0, "STAGES": 2},
}

SEARCH_SPACE = {
    "D64_NC": {"BLOCK_M": [64, 128], "BLOCK_N": [32, 64], "WARPS": [4, 8], "FLAT": [0, 1],
               "HOST_DESC": [0, 1], "PERSIST": [0, 1, 2], "STAGES": [2, 3, 4, 5]},
    "D64_C": {"BLOCK_M": [64, 128], "BLOCK_N": [32, 64], "WARPS": [4, 8], "FLAT": [0, 1],
              "HOST_DESC": [0, 1], "REVERSE_M": [0, 1], "STAGES": [2, 3, 4, 5]},
    "D128_NC": {"BLOCK_M": [64, 128], "BLOCK_N": [32, 64, 128], "WARPS": [4, 8],
                "FLAT": [0, 1], "HOST_DESC": [0, 1], "PERSIST": [0, 1, 2],
                "STAGES": [1, 2, 3, 4]},
    "D128_C": {"BLOCK_M": [64, 128], "BLOCK_N": [32, 64], "WARPS": [4, 8], "FLAT": [0, 1],
               "HOST_DESC": [0, 1], "REVERSE_M": [0, 1], "STAGES": [1, 2, 3, 4]},
}

_LOG2E = 1.4426950408889634
# shared memory kept for the Q tile + the K/V ring (H100 allows 227 KB per block)
_SMEM_BUDGET = 200 * 1024


@triton.jit
def _load_tile(desc, bh, row, S, FLAT: tl.constexpr, ROWS: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Rows [row, row + ROWS) of head ``bh`` as a [ROWS, HEAD_DIM] tile."""
    if FLAT:
        tile = desc.load([bh * S + row, 0])
    else:
        tile = desc.load([bh, row, 0]).reshape(ROWS, HEAD_DIM)
    return tile


@triton.jit
def _attn_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_bh, offs_m, lo, hi, S, qk_scale,
                MASK: tl.constexpr, FLAT: tl.constexpr,
                BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Key blocks [lo, hi). MASK: 0 none, 1 causal (key <= query), 2 keys past S."""
    for start_n in tl.range(lo, hi, BLOCK_N):
        k = _load_tile(desc_k, kv_bh, start_n, S, FLAT, BLOCK_N, HEAD_DIM)
        qk = tl.dot(q, k.T)
        if MASK == 0:
            # scale folded into one FMA; the row max is taken on unscaled scores
            m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            qk = qk * qk_scale - m_ij[:, None]
        else:
            offs_n = start_n + tl.arange(0, BLOCK_N)
            if MASK == 1:
                keep = offs_m[:, None] >= offs_n[None, :]
            else:
                keep = (offs_n < S)[None, :]
            qk = tl.where(keep, qk * qk_scale, float("-inf"))
            m_ij = tl.maximum(m_i, tl.max(qk, 1))
            qk = qk - m_ij[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_ij)
        l_ij = tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = _load_tile(desc_v, kv_bh, start_n, S, FLAT, BLOCK_N, HEAD_DIM)
        acc = tl.dot(p.to(v.dtype), v, acc)
        # updated last to shorten the live ranges inside the loop
        l_i = l_i * alpha + l_ij
        m_i = m_ij
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(Q, K, V, Out, qk_scale, BHq, BHkv, Hq, Hkv, S, G,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              CAUSAL: tl.constexpr, EVEN_N: tl.constexpr, REVERSE_M: tl.constexpr,
              FLAT: tl.constexpr, HOST_DESC: tl.constexpr):
    # 1-D launch: program = (batch*Hq + q_head) * num_m + m_tile, so all query tiles of
    # one head run together and the q heads of one GQA group follow each other.
    num_m = tl.cdiv(S, BLOCK_M)
    pid = tl.program_id(0)
    bh = pid // num_m
    start_m = pid % num_m
    if REVERSE_M:
        start_m = num_m - 1 - start_m  # causal: longest rows first
    off_b = bh // Hq
    kv_bh = off_b * Hkv + (bh % Hq) // G

    # contiguous [B*H, S, D] tensors; descriptors clip/zero-pad each sequence
    if HOST_DESC:  # Q/K/V/Out are TensorDescriptors made by the wrapper
        desc_q = Q
        desc_k = K
        desc_v = V
        desc_o = Out
    else:
        head_stride = S * HEAD_DIM
        if FLAT:
            desc_q = tl.make_tensor_descriptor(Q, shape=[BHq * S, HEAD_DIM], strides=[HEAD_DIM, 1],
                                               block_shape=[BLOCK_M, HEAD_DIM])
            desc_k = tl.make_tensor_descriptor(K, shape=[BHkv * S, HEAD_DIM], strides=[HEAD_DIM, 1],
                                               block_shape=[BLOCK_N, HEAD_DIM])
            desc_v = tl.make_tensor_descriptor(V, shape=[BHkv * S, HEAD_DIM], strides=[HEAD_DIM, 1],
                                               block_shape=[BLOCK_N, HEAD_DIM])
        else:
            desc_q = tl.make_tensor_descriptor(Q, shape=[BHq, S, HEAD_DIM],
                                               strides=[head_stride, HEAD_DIM, 1],
                                               block_shape=[1, BLOCK_M, HEAD_DIM])
            desc_k = tl.make_tensor_descriptor(K, shape=[BHkv, S, HEAD_DIM],
                                               strides=[head_stride, HEAD_DIM, 1],
                                               block_shape=[1, BLOCK_N, HEAD_DIM])
            desc_v = tl.make_tensor_descriptor(V, shape=[BHkv, S, HEAD_DIM],
                                               strides=[head_stride, HEAD_DIM, 1],
                                               block_shape=[1, BLOCK_N, HEAD_DIM])
        desc_o = tl.make_tensor_descriptor(Out, shape=[BHq, S, HEAD_DIM],
                                           strides=[head_stride, HEAD_DIM, 1],
                                           block_shape=[1, BLOCK_M, HEAD_DIM])

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    q = _load_tile(desc_q, bh, start_m * BLOCK_M, S, FLAT, BLOCK_M, HEAD_DIM)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    if CAUSAL:
        tl.static_assert(BLOCK_N <= BLOCK_M)
        # off-diagonal tiles: every key precedes every query of this tile, no mask
        acc, l_i, m_i = _attn_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_bh, offs_m,
                                    0, start_m * BLOCK_M, S, qk_scale,
                                    0, FLAT, BLOCK_N, HEAD_DIM)
        # diagonal band, masked (keys past S only meet padding rows, which are dropped)
        hi = tl.minimum((start_m + 1) * BLOCK_M, S)
        acc, l_i, m_i = _attn_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_bh, offs_m,
                                    start_m * BLOCK_M, hi, S, qk_scale,
                                    1, FLAT, BLOCK_N, HEAD_DIM)
    else:
        full = (S // BLOCK_N) * BLOCK_N
        acc, l_i, m_i = _attn_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_bh, offs_m,
                                    0, full, S, qk_scale,
                                    0, FLAT, BLOCK_N, HEAD_DIM)
        if not EVEN_N:
            # ragged last key tile: mask keys >= S
            acc, l_i, m_i = _attn_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_bh, offs_m,
                                        full, S, S, qk_scale,
                                        2, FLAT, BLOCK_N, HEAD_DIM)

    acc = acc / l_i[:, None]
    desc_o.store([bh, start_m * BLOCK_M, 0],
                 acc.to(q.dtype).reshape(1, BLOCK_M, HEAD_DIM))


@triton.jit
def _attn_fwd_persist(Q, K, V, Out, qk_scale, BHq, BHkv, Hq, Hkv, S, G, n_tiles,
                      HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      EVEN_N: tl.constexpr, FLAT: tl.constexpr, NUM_PROGS: tl.constexpr):
    """Non-causal, persistent: program p takes work items p, p + NUM_PROGS, ... in order, so
    the items in flight at any moment are adjacent (same heads, same GQA group: L2 reuse)."""
    num_m = tl.cdiv(S, BLOCK_M)
    pid = tl.program_id(0)
    head_stride = S * HEAD_DIM
    if FLAT:
        desc_q = tl.make_tensor_descriptor(Q, shape=[BHq * S, HEAD_DIM], strides=[HEAD_DIM, 1],
                                           block_shape=[BLOCK_M, HEAD_DIM])
        desc_k = tl.make_tensor_descriptor(K, shape=[BHkv * S, HEAD_DIM], strides=[HEAD_DIM, 1],
                                           block_shape=[BLOCK_N, HEAD_DIM])
        desc_v = tl.make_tensor_descriptor(V, shape=[BHkv * S, HEAD_DIM], strides=[HEAD_DIM, 1],
                                           block_shape=[BLOCK_N, HEAD_DIM])
    else:
        desc_q = tl.make_tensor_descriptor(Q, shape=[BHq, S, HEAD_DIM],
                                           strides=[head_stride, HEAD_DIM, 1],
                                           block_shape=[1, BLOCK_M, HEAD_DIM])
        desc_k = tl.make_tensor_descriptor(K, shape=[BHkv, S, HEAD_DIM],
                                           strides=[head_stride, HEAD_DIM, 1],
                                           block_shape=[1, BLOCK_N, HEAD_DIM])
        desc_v = tl.make_tensor_descriptor(V, shape=[BHkv, S, HEAD_DIM],
                                           strides=[head_stride, HEAD_DIM, 1],
                                           block_shape=[1, BLOCK_N, HEAD_DIM])
    desc_o = tl.make_tensor_descriptor(Out, shape=[BHq, S, HEAD_DIM],
                                       strides=[head_stride, HEAD_DIM, 1],
                                       block_shape=[1, BLOCK_M, HEAD_DIM])
    full = (S // BLOCK_N) * BLOCK_N
    for tile in tl.range(pid, n_tiles, NUM_PROGS):
        bh = tile // num_m
        start_m = tile % num_m
        kv_bh = (bh // Hq) * Hkv + (bh % Hq) // G
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        q = _load_tile(desc_q, bh, start_m * BLOCK_M, S, FLAT, BLOCK_M, HEAD_DIM)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        acc, l_i, m_i = _attn_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_bh, offs_m,
                                    0, full, S, qk_scale, 0, FLAT, BLOCK_N, HEAD_DIM)
        if not EVEN_N:
            acc, l_i, m_i = _attn_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_bh, offs_m,
                                        full, S, S, qk_scale, 2, FLAT, BLOCK_N, HEAD_DIM)
        acc = acc / l_i[:, None]
        desc_o.store([bh, start_m * BLOCK_M, 0],
                     acc.to(q.dtype).reshape(1, BLOCK_M, HEAD_DIM))


def _tma_workspace(size: int, alignment: int, stream, device=None):
    return torch.empty(size, dtype=torch.int8, device=device)


@functools.lru_cache(maxsize=None)
def _num_sms(device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _settings(D: int, causal: bool, S: int) -> dict:
    """The CONFIG class a shape runs with: every token of its key matches ("D<d>": head dim
    <= d, "C"/"NC": causal or not, "S<s>": sequence length <= s); tightest bounds win."""
    best, rank = None, None
    for key, cfg in CONFIG.items():
        d = s = math.inf
        c = None
        for tok in key.split("_"):
            if tok in ("C", "NC"):
                c = tok == "C"
            elif tok[:1] == "D" and tok[1:].isdigit():
                d = int(tok[1:])
            elif tok[:1] == "S" and tok[1:].isdigit():
                s = int(tok[1:])
            else:
                raise ValueError(f"bad CONFIG class token {tok!r} in {key!r}")
        r = (d, s, c is None)
        if D <= d and S <= s and c in (None, causal) and (rank is None or r < rank):
            best, rank = cfg, r
    if best is None:
        raise ValueError(f"no CONFIG class for D={D} causal={causal} S={S}")
    return best


def _fit_stages(block_m: int, block_n: int, head_dim: int, stages: int, elem: int) -> int:
    """Largest num_stages <= the requested one whose Q tile + K/V ring fits in shared memory."""
    while stages > 1 and (block_m + 2 * stages * block_n) * head_dim * elem > _SMEM_BUDGET:
        stages -= 1
    return stages


def _host_descriptors(q, k, v, out, block_m: int, block_n: int, flat: bool):
    """Host-side TMA descriptors for contiguous q/k/v/out (same views as the in-kernel path)."""
    B, Hq, S, D = q.shape
    Hkv = k.shape[1]
    if flat:
        return (TensorDescriptor(q, [B * Hq * S, D], [D, 1], [block_m, D]),
                TensorDescriptor(k, [B * Hkv * S, D], [D, 1], [block_n, D]),
                TensorDescriptor(v, [B * Hkv * S, D], [D, 1], [block_n, D]),
                TensorDescriptor(out, [B * Hq, S, D], [S * D, D, 1], [1, block_m, D]))
    return (TensorDescriptor(q, [B * Hq, S, D], [S * D, D, 1], [1, block_m, D]),
            TensorDescriptor(k, [B * Hkv, S, D], [S * D, D, 1], [1, block_n, D]),
            TensorDescriptor(v, [B * Hkv, S, D], [S * D, D, 1], [1, block_n, D]),
            TensorDescriptor(out, [B * Hq, S, D], [S * D, D, 1], [1, block_m, D]))


def _dense(t: torch.Tensor) -> torch.Tensor:
    """A contiguous, 16-byte aligned tensor with the same values (no copy when it already is)."""
    if not t.is_contiguous():
        t = t.contiguous()
    if (t.storage_offset() * t.element_size()) % 16:
        t = t.clone()
    return t


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be 4-D [B, H, S, D]")
    B, Hq, S, D = q.shape
    Hkv = k.shape[1]
    if k.shape != v.shape or k.shape[0] != B or k.shape[2] != S or k.shape[3] != D:
        raise ValueError("k and v must be [B, Hkv, S, D] matching q")
    if Hq % Hkv != 0:
        raise ValueError("Hq must be a multiple of Hkv")
    if D not in (16, 32, 64, 128):
        raise ValueError("head dim must be 16, 32, 64 or 128")
    if q.dtype not in (torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError("q, k, v must share one dtype, float16 or bfloat16")
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    if sm_scale == 0:
        raise ValueError("sm_scale must be non-zero")
    if sm_scale < 0:
        # the folded max trick needs a positive scale: s*(q.k) == |s|*((-q).k)
        q = -q
        sm_scale = -sm_scale
    q, k, v = _dense(q), _dense(k), _dense(v)
    out = torch.empty((B, Hq, S, D), dtype=q.dtype, device=q.device)

    cfg = _settings(D, causal, S)
    block_m = cfg["BLOCK_M"]
    block_n = cfg["BLOCK_N"]
    if causal:
        block_n = min(block_n, block_m)  # the causal split walks the band in BLOCK_N steps
    stages = _fit_stages(block_m, block_n, D, cfg["STAGES"], q.element_size())
    host = bool(cfg["HOST_DESC"])
    flat = bool(cfg["FLAT"])
    if host:
        args = _host_descriptors(q, k, v, out, block_m, block_n, flat)
    else:
        args = (q, k, v, out)
        if q.is_cuda:
            triton.set_allocator(functools.partial(_tma_workspace, device=q.device))

    persist = 0 if causal or host or not q.is_cuda else cfg.get("PERSIST", 0)
    if persist:
        n_tiles = B * Hq * triton.cdiv(S, block_m)
        progs = min(n_tiles, _num_sms(q.device) * persist)
        _attn_fwd_persist[(progs,)](
            q, k, v, out, float(sm_scale) * _LOG2E, B * Hq, B * Hkv, Hq, Hkv, S, Hq // Hkv,
            n_tiles, HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, EVEN_N=S % block_n == 0,
            FLAT=flat, NUM_PROGS=progs,
            num_warps=cfg["WARPS"], num_stages=stages)
        return out
    grid = (B * Hq * triton.cdiv(S, block_m),)
    _attn_fwd[grid](
        *args, float(sm_scale) * _LOG2E, B * Hq, B * Hkv, Hq, Hkv, S, Hq // Hkv,
        HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, EVEN_N=S % block_n == 0,
        REVERSE_M=causal and bool(cfg.get("REVERSE_M", 0)), FLAT=flat, HOST_DESC=host,
        num_warps=cfg["WARPS"], num_stages=stages,
    )
    return out
