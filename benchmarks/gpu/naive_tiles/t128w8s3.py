"""Plain FlashAttention-2 style forward kernel for grouped-query attention (GQA).

This is the deliberately simple starting point of an evolution run:

* pointer-based loads with masks (no tensor descriptors),
* grid ``(B * Hq, cdiv(S, BLOCK_M))``: axis 0 is the (batch, query head) pair,
  axis 1 the block of query rows,
* ``kv_head = q_head // G`` with ``G = Hq // Hkv``,
* online softmax in fp32 with ``tl.exp(qk * sm_scale - m)`` (natural exp, scale
  applied to every score),
* causal attention in ONE loop over key blocks up to the diagonal, with the
  causal mask applied by ``tl.where`` on every tile.

Contract: ``attention(q, k, v, *, causal=False, sm_scale=None)`` with q
``[B, Hq, S, D]`` and k, v ``[B, Hkv, S, D]`` (fp16 or bf16); returns a new tensor
shaped and typed like q.  Tunables live in ``CONFIG``, per shape class (read at every
call; ``_settings`` picks a shape's class).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

# Settings per shape class. A class key is tokens joined by "_": "D<d>" head dim <= d,
# "C" / "NC" causal or not, "S<s>" sequence length <= s; a missing token matches anything
# and a shape takes the matching class with the tightest bounds (`_settings`).
CONFIG = {
    "D64_NC": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
    "D64_C": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
    "NC": {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
    "C": {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
}

# allowed values of each knob, shared by every class
SEARCH_SPACE = {
    "BLOCK_M": [32, 64, 128],
    "BLOCK_N": [32, 64, 128],
    "num_warps": [4, 8],
    "num_stages": [1, 2, 3, 4],
}

# shared-memory budget used to clamp num_stages (H100: 227 KB per block)
_SMEM_BUDGET = 200 * 1024


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


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn,
                    offs_m, offs_d, lo, hi, S, sm_scale,
                    CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr):
    """Stream key/value blocks [lo, hi) through the online softmax."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_mask = offs_n[:, None] < S
        k = k_base.load([start_n, 0])
        v = v_base.load([start_n, 0])
        qk = tl.dot(q, tl.trans(k))
        # keys past the end of the sequence never contribute
        valid = offs_n[None, :] < S
        if CAUSAL:
            # causal mask: key j is visible to query i only when j <= i
            valid = valid & (offs_m[:, None] >= offs_n[None, :])
        # a full key tile (S a multiple of BLOCK_N) needs no mask against S
        if CAUSAL or not EVEN_N:
            qk = tl.where(valid, qk, float("-inf"))
        # online softmax (natural exp, scale applied to every score)
        # scale folded into one multiply by sm_scale * log2(e): exp(x) = exp2(x * log2 e)
        qk = qk * (sm_scale * 1.4426950408889634)
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.exp2(qk - m_ij[:, None])
        alpha = tl.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_ij
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(Q, K, V, Out, sm_scale,
              stride_qb, stride_qh, stride_qs,
              stride_kb, stride_kh, stride_ks,
              stride_vb, stride_vh, stride_vs,
              stride_ob, stride_oh, stride_os,
              Hq, S, G,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              CAUSAL: tl.constexpr, EVEN_N: tl.constexpr):
    # grid order: axis 0 = block of query rows, axis 1 = batch * query head
    off_bh = tl.program_id(1)
    start_m = tl.program_id(0)
    off_b = off_bh // Hq
    off_h = off_bh % Hq
    kv_head = off_h // G

    q_base = Q + off_b.to(tl.int64) * stride_qb + off_h.to(tl.int64) * stride_qh
    k_base = K + off_b.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh
    v_base = V + off_b.to(tl.int64) * stride_vb + kv_head.to(tl.int64) * stride_vh
    o_base = Out + off_b.to(tl.int64) * stride_ob + off_h.to(tl.int64) * stride_oh

    # K/V through TMA descriptors: rows past S come back as zeros
    desc_k = tl.make_tensor_descriptor(k_base, shape=[S, HEAD_DIM], strides=[stride_ks, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    desc_v = tl.make_tensor_descriptor(v_base, shape=[S, HEAD_DIM], strides=[stride_vs, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_mask = offs_m[:, None] < S
    q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :], mask=q_mask, other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    # causal: one loop over key blocks up to (and including) the diagonal
    lo = 0
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, S)
    else:
        hi = S
    if CAUSAL:
        # key blocks left of the diagonal band are visible to every query row:
        # stream them without the causal mask, then mask only the band
        split_n = tl.maximum(lo, (start_m * BLOCK_M) // BLOCK_N * BLOCK_N)
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, stride_ks, stride_vs,
                                        offs_m, offs_d, lo, split_n, S, sm_scale, False,
                                        BLOCK_N, EVEN_N)
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, stride_ks, stride_vs,
                                        offs_m, offs_d, split_n, hi, S, sm_scale, True, BLOCK_N, EVEN_N)
    else:
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, stride_ks, stride_vs,
                                        offs_m, offs_d, lo, hi, S, sm_scale, CAUSAL, BLOCK_N, EVEN_N)

    # rows past the end of the sequence saw only masked scores: keep them finite
    l_i = tl.where(l_i > 0.0, l_i, 1.0)
    acc = acc / l_i[:, None]
    # O through a TMA descriptor: rows past S are clipped by the hardware
    o_desc = tl.make_tensor_descriptor(o_base, shape=[S, HEAD_DIM], strides=[stride_os, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])
    o_desc.store([start_m * BLOCK_M, 0], acc.to(Out.dtype.element_ty))


def _tma_workspace(size: int, alignment: int, stream):
    """Global memory for descriptors made inside the kernel (tl.make_tensor_descriptor)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be 4-D [B, H, S, D]")
    B, Hq, S, D = q.shape
    Hkv = k.shape[1]
    if k.shape != v.shape or k.shape[0] != B or k.shape[2] != S or k.shape[3] != D:
        raise ValueError("k and v must be [B, Hkv, S, D] matching q")
    if Hq % Hkv != 0:
        raise ValueError("Hq must be a multiple of Hkv")
    if D not in (16, 32, 64, 128, 256):
        raise ValueError("head dim must be a power of two between 16 and 256")
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(D)
    if sm_scale == 0:
        raise ValueError("sm_scale must be non-zero")
    if sm_scale < 0:
        # the kernel takes the row max of unscaled scores: keep the scale positive
        q = -q
        sm_scale = -sm_scale
    # the kernel addresses the head dim with unit stride
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    if v.stride(-1) != 1:
        v = v.contiguous()
    # TMA descriptors need 16-byte aligned bases and strides: copy a view without them
    k, v = (t if all(x * t.element_size() % 16 == 0
                   for x in (t.storage_offset(), *t.stride()[:-1]))
            else t.clone(memory_format=torch.contiguous_format) for t in (k, v))
    out = torch.empty_like(q, memory_format=torch.contiguous_format)

    cfg = _settings(D, causal, S)
    block_m = cfg["BLOCK_M"]
    block_n = cfg["BLOCK_N"]
    grid = (triton.cdiv(S, block_m), B * Hq)
    if q.is_cuda:  # descriptors made in the kernel need a workspace
        triton.set_allocator(_tma_workspace)
    _attn_fwd[grid](
        q, k, v, out, float(sm_scale),
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        Hq, S, Hq // Hkv,
        HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
        num_warps=cfg["num_warps"],
        num_stages=_fit_stages(block_m, block_n, D, cfg["num_stages"], q.element_size()),
        EVEN_N=S % block_n == 0,
    )
    return out
