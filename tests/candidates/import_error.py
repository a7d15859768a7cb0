"""Broken test candidate: raises while being imported (expect `import`)."""

import torch

CONFIG = {"BLOCK_M": 64}
raise RuntimeError("this candidate cannot be imported")


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    return torch.empty_like(q)
