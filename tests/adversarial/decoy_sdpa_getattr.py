"""Cheat: decoy Triton kernel + SDPA reached through an obfuscated getattr (d)1.

The attribute name is built by string concatenation so a regex for
"scaled_dot_product_attention" does not match.
Expected: ``forbidden`` (static: getattr with a computed name; runtime: guard raisers).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

EXPECTED = "forbidden"
GPU_ONLY = False
RUNTIME = "forbidden"  # class when the static check is bypassed (runtime guard)


@triton.jit
def _decoy(X, Y):
    tl.store(Y, tl.load(X))


_NAME = "scaled_dot_" + "product_" + "attention"


def attention(q, k, v, *, causal=False, sm_scale=None):
    scratch = torch.empty(1, dtype=q.dtype, device=q.device)
    _decoy[(1,)](q, scratch)
    fn = getattr(getattr(torch, "n" + "n").functional, _NAME)
    return fn(q, k, v, is_causal=causal, scale=sm_scale, enable_gqa=True)
