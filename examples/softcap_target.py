"""Example target file: attention with logit soft-capping, ``c * tanh(s / c)``.

Gemma 2 caps attention logits this way (before the mask and the softmax). This file is
the README's worked example of a target plugin (format: evaluator/targets/plugin.py);
run it with

    evolve targets examples/softcap_target.py        # contract, suites, baselines
    evolve eval examples/softcap_seed.py --target examples/softcap_target.py
    evolve start --target examples/softcap_target.py --operator offline

It reuses the built-in prefill pieces (shape grid, seeded inputs with their adversarial
kinds) and adds the cap: a ``softcap`` field on the shape, the capped reference, a
same-dtype torch yardstick and a FlexAttention baseline with a ``score_mod``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evaluator import inputs as _inputs
from evaluator.targets import prefill
from evaluator.targets.plugin import Call

NAME = "softcap"
DESCRIPTION = "GQA attention forward with logit soft-capping c*tanh(s/c)"
SEED = "softcap_seed.py"  # default --seed, relative to this file
KINDS = prefill.KINDS  # gaussian, needle, large_rows, near_const_v
CONTRACT = '''def attention(q, k, v, *, causal=False, sm_scale=None, softcap=30.0):
    """Attention with soft-capped logits.

    s = (q @ k^T) * sm_scale; s = softcap * tanh(s / softcap); causal mask
    (query i sees keys j <= i); out = softmax(s) @ v.
    q: [B, Hq, S, D]; k, v: [B, Hkv, S, D]; Hq % Hkv == 0 (query head h reads
    kv head h // (Hq // Hkv)); fp16 in the CPU interpreter, bf16/fp16 on a
    GPU; D 64 or 128; any S; any strides. sm_scale None means 1/sqrt(D).
    Returns a new tensor like q; inputs must not be modified.
    """'''


@dataclass(frozen=True)
class Shape(prefill.Shape):
    softcap: float = 30.0

    @property
    def name(self) -> str:
        return f"{super().name} cap={self.softcap:g}"


def _s(B, Hq, Hkv, S, D, causal, dtype="bfloat16", cap=30.0, **kw):
    return Shape(B, Hq, Hkv, S, D, causal, dtype, softcap=cap, **kw)


SUITES = {
    "smoke": (_s(1, 4, 1, 64, 64, False, "float16"), _s(1, 4, 2, 96, 64, True, "float16", cap=5.0)),
    "quick": (_s(4, 32, 8, 4096, 128, True), _s(16, 32, 8, 1024, 128, False, cap=20.0)),
    "default": tuple(_s(16384 // s, 32, 8, s, 128, c) for s in (1024, 4096) for c in (False, True)),
}
VALIDATION = {
    "cpu": (_s(1, 4, 1, 33, 64, True, "float16", cap=2.0), _s(1, 2, 2, 17, 128, False, "float16"),
            _s(1, 4, 2, 40, 64, False, "float16", cap=10.0, sm_scale=0.3)),
    "gpu": (_s(2, 8, 2, 1000, 128, True), _s(1, 4, 1, 127, 64, False, cap=5.0),
            _s(3, 7, 1, 17, 128, True, "float16", cap=50.0, sm_scale=0.3),
            _s(1, 12, 3, 1000, 128, False, layout="bshd")),
}


def make_inputs(shape: Shape, seed: int, kind: str, device: str) -> Call:
    q, k, v = _inputs.make_inputs(shape, seed, kind, device)
    return Call((q, k, v), {**prefill.kwargs(shape), "softcap": shape.softcap})


def _attend(q, k, v, shape: Shape, rows, dtype):
    """Soft-capped attention in ``dtype``; only the query rows ``rows`` (all when None)."""
    import torch

    B, Hq, S, D = q.shape
    G = Hq // k.shape[1]
    rows_t = torch.arange(S, device=q.device) if rows is None else torch.as_tensor(rows, device=q.device)
    out = torch.empty((B, Hq, rows_t.numel(), D), dtype=dtype, device=q.device)
    visible = torch.arange(S, device=q.device)[None, :] <= rows_t[:, None]
    for b in range(B):
        for h in range(Hq):
            qq = q[b, h].index_select(0, rows_t).to(dtype)
            s = torch.matmul(qq, k[b, h // G].to(dtype).T) * shape.scale
            s = shape.softcap * torch.tanh(s / shape.softcap)
            if shape.causal:
                s = s.masked_fill(~visible, -math.inf)
            p = torch.softmax(s.float(), dim=-1).to(dtype)
            out[b, h] = torch.matmul(p, v[b, h // G].to(dtype))
    return out


def reference(call: Call, shape: Shape, rows=None):
    import torch

    q, k, v = call.args
    return _attend(q, k, v, shape, rows, torch.float64 if q.device.type == "cpu" else torch.float32)


def lowp(call: Call, shape: Shape, rows=None):
    q, k, v = call.args
    return _attend(q, k, v, shape, rows, q.dtype)


# the correctness rule's constants (evaluator/correctness.py); these are its defaults
TOLERANCE = {"max_ratio": 2.0, "abs_floor_ulps": 1.0, "rel_floor_ulps": 0.25}


def flops(shape: Shape) -> float:
    return shape.flops()


def _flex():
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    compiled = torch.compile(flex_attention, dynamic=False)

    def run(q, k, v, *, causal=False, sm_scale=None, softcap=30.0):
        def cap(score, b, h, q_idx, kv_idx):
            return softcap * torch.tanh(score / softcap)

        mask = None
        if causal:
            mask = create_block_mask(lambda b, h, i, j: i >= j, None, None, q.shape[2], q.shape[2],
                                     device=q.device)
        return compiled(q, k, v, score_mod=cap, block_mask=mask, scale=sm_scale, enable_gqa=True)

    return run


def _torch_fp32():
    def run(q, k, v, *, causal=False, sm_scale=None, softcap=30.0):
        B, Hq, S, D = q.shape
        shape = Shape(B, Hq, k.shape[1], S, D, causal, sm_scale=sm_scale, softcap=softcap)
        return _attend(q.float(), k.float(), v.float(), shape, None, q.dtype)

    return run


BASELINES = {"cuda": {"flex": _flex}, "cpu": {"torch-cpu": _torch_fp32}}
