"""Cheat: launch a foreign GPU binary (e.g. a library FlashAttention kernel's cubin,
embedded in the source as bytes) through Triton's driver: ``load_binary`` loads any
cubin/fatbin image and ``launcher_cls`` builds a launcher for it; the decoy Triton
kernel only makes the file look like a Triton candidate.

Not a Triton kernel computing the attention. Expected: ``forbidden`` (static: the
``load_binary`` / ``launcher_cls`` attributes). The static check is the wall here: the
runtime guard cannot deny these, as Triton loads every kernel it compiled through them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime import driver

EXPECTED = "forbidden"
GPU_ONLY = True

_CUBIN = b"\x7fELF..."  # a prebuilt attention kernel's image would go here


@triton.jit
def _decoy(X, Y):
    tl.store(Y, tl.load(X))


def attention(q, k, v, *, causal=False, sm_scale=None):
    scratch = torch.empty(1, dtype=q.dtype, device=q.device)
    _decoy[(1,)](q, scratch)
    dev = torch.cuda.current_device()
    module, function, n_regs, n_spills, *_ = driver.active.utils.load_binary("fa_fwd", _CUBIN, 0, dev)
    launcher = driver.active.launcher_cls  # + a src/metadata pair describing fa_fwd's arguments
    o = torch.empty_like(q)
    launcher(function, o, q, k, v)
    return o
