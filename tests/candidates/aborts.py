"""Broken test candidate: the process aborts (``os.abort()``) on the first call (expect `runtime`).

``import os`` is forbidden by the static check, so tests evaluate it with
``EvalOptions(static_check=False)`` to exercise the runtime path (the guard may still
refuse the import, which is reported as `forbidden`).
"""

import os

import torch


def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    os.abort()
    return torch.empty_like(q)
