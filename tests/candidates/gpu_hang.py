"""GPU fault test candidate: a kernel that spins forever on a flag nobody sets (expect `timeout`;
the worker's process group is killed and the next evaluation on the same GPU must work)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _spin(Flag, Out):
    # volatile loads cannot be hoisted out of the loop; Flag stays 0 forever
    flag = tl.load(Flag, volatile=True)
    while flag == 0:
        flag = tl.load(Flag, volatile=True)
    tl.store(Out, flag)


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    flag = torch.zeros((1,), dtype=torch.int32, device=q.device)
    out = torch.zeros_like(q)
    _spin[(1,)](flag, out)
    return out
