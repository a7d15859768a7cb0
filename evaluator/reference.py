"""Trusted reference attention (fp64 on CPU, fp32 without TF32 on GPU) and PyTorch's own
same-dtype result (SDPA's MATH backend in bf16/fp16), both computed only in the checker.

Both functions take an optional ``rows`` index (query positions) so the checker can
verify a sample of rows of a large timed output without materialising S x S scores
for every row; memory is bounded by processing one (batch, head-chunk) at a time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

_SCORE_BUDGET = 1 << 27  # elements of one score chunk (512 MB in fp32)


def _mask(rows: "torch.Tensor", S: int, device) -> "torch.Tensor":
    import torch

    cols = torch.arange(S, device=device)
    return cols[None, :] <= rows[:, None]  # True = visible


def reference(q, k, v, *, causal: bool, sm_scale: float, rows=None) -> "torch.Tensor":
    """Exact-as-possible attention: fp64 on CPU, fp32 on CUDA; returns that dtype."""
    import torch

    hp = torch.float64 if q.device.type == "cpu" else torch.float32
    B, Hq, S, D = q.shape
    G = Hq // k.shape[1]
    rows_t = torch.arange(S, device=q.device) if rows is None else torch.as_tensor(rows, device=q.device)
    R = rows_t.numel()
    out = torch.empty((B, Hq, R, D), dtype=hp, device=q.device)
    step = max(1, _SCORE_BUDGET // max(1, R * S))
    mask = _mask(rows_t, S, q.device) if causal else None
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for b in range(B):
            for h0 in range(0, Hq, step):
                h1 = min(Hq, h0 + step)
                qq = q[b, h0:h1].index_select(1, rows_t).to(hp)
                kv_idx = torch.arange(h0, h1, device=q.device) // G
                kk = k[b].index_select(0, kv_idx).to(hp)
                vv = v[b].index_select(0, kv_idx).to(hp)
                s = torch.matmul(qq, kk.transpose(-1, -2)) * sm_scale
                if mask is not None:
                    s = s.masked_fill(~mask, -math.inf)
                p = torch.softmax(s, dim=-1)
                out[b, h0:h1] = torch.matmul(p, vv)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return out


def torch_lowp(q, k, v, *, causal: bool, sm_scale: float, rows=None) -> "torch.Tensor":
    """PyTorch's same-dtype attention (SDPA MATH backend), the yardstick of the error bound."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    B, Hq, S, D = q.shape
    G = Hq // k.shape[1]
    rows_t = None if rows is None else torch.as_tensor(rows, device=q.device)
    R = S if rows_t is None else rows_t.numel()
    step = max(1, _SCORE_BUDGET // max(1, R * S))
    out = torch.empty((B, Hq, R, D), dtype=q.dtype, device=q.device)
    mask = None
    if rows_t is not None and causal:
        mask = _mask(rows_t, S, q.device)
    with sdpa_kernel(SDPBackend.MATH):
        for b in range(B):
            for h0 in range(0, Hq, step):
                h1 = min(Hq, h0 + step)
                qq = q[b:b + 1, h0:h1]
                if rows_t is not None:
                    qq = qq.index_select(2, rows_t)
                kv_idx = torch.arange(h0, h1, device=q.device) // G
                kk = k[b:b + 1].index_select(1, kv_idx)
                vv = v[b:b + 1].index_select(1, kv_idx)
                if mask is not None:
                    o = sdpa(qq, kk, vv, attn_mask=mask, scale=sm_scale)
                else:
                    o = sdpa(qq, kk, vv, is_causal=causal, scale=sm_scale)
                out[b, h0:h1] = o[0]
    return out
