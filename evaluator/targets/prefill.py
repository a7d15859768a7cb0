"""Prefill attention (shared by the ``gqa`` and ``mha`` target files): shape, suites,
validation covering sets, inputs, reference and baselines adapted to the plugin format.

The candidate contract::

    def attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None) -> Tensor

with q ``[B, Hq, S, D]``, k/v ``[B, Hkv, S, D]``. Suite inputs are contiguous; the
validation set holds one non-contiguous case (a ``[B, S, H, D]`` tensor viewed as
``[B, H, S, D]``), so candidates must honour strides (or copy).

Suites: ``smoke`` tiny fp16 shapes for the CPU interpreter (bf16 ``tl.dot`` is wrong
there); ``quick`` 4 GPU shapes (bf16), a pre-screen, never the basis of a recorded "ok";
``default`` GPU shapes Hq/Hkv/D x S in {1024, 4096, 16384} (B*S = 16384 tokens) x causal
in {no, yes}, bf16.

Validation is a covering set, not a cross product: every S in {1, 17, 127, 1000, 3001},
B in 1..3, G in {1, 4, 7, 8} with Hkv = 1 (plus Hkv > 1 cases, which catch kv_head =
q_head bugs), D in {64, 128}, causal both ways and a non-default ``sm_scale`` each
appear at least once. The interpreter uses a tiny subset (S <= 127, fp16). The
``quick`` suite checks only the quick set (5 GPU shapes: causal both ways, G > 1 and
Hkv == Hq, odd S, D 64 and 128, fp16, a custom scale, a strided view).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

# imported now, not inside the functions: the worker's guard drops evaluator modules from
# sys.modules, and a later import would load fresh copies (other classes)
from evaluator import baselines as _baselines
from evaluator import inputs as _inputs
from evaluator import precompile as _precompile
from evaluator import reference as _reference
from evaluator.targets.plugin import Call



@dataclass(frozen=True)
class Shape:
    """One problem instance. ``layout`` is ``bhsd`` (contiguous) or ``bshd`` (a transposed view)."""

    B: int
    Hq: int
    Hkv: int
    S: int
    D: int
    causal: bool
    dtype: str = "bfloat16"
    sm_scale: float | None = None
    layout: str = "bhsd"

    @property
    def G(self) -> int:
        return self.Hq // self.Hkv

    @property
    def scale(self) -> float:
        return self.sm_scale if self.sm_scale is not None else 1.0 / math.sqrt(self.D)

    @property
    def name(self) -> str:
        s = f"B={self.B} Hq={self.Hq} Hkv={self.Hkv} S={self.S} D={self.D}"
        s += " causal" if self.causal else " noncausal"
        s += f" {self.dtype}"
        if self.sm_scale is not None:
            s += f" scale={self.sm_scale:g}"
        if self.layout != "bhsd":
            s += f" {self.layout}"
        return s

    @property
    def rows(self) -> int:
        return self.S

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.B, self.Hq, self.S, self.D)

    def flops(self) -> float:
        """Forward FLOPs: 4*B*Hq*S*S*D (QK^T and PV), half of it when causal."""
        f = 4.0 * self.B * self.Hq * self.S * self.S * self.D
        return f / 2 if self.causal else f

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Shape":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def default_suite(heads: list[tuple[int, int, int]]) -> tuple[Shape, ...]:
    out = []
    for hq, hkv, d in heads:
        for s in (1024, 4096, 16384):
            for causal in (False, True):
                out.append(Shape(B=16384 // s, Hq=hq, Hkv=hkv, S=s, D=d, causal=causal))
    return tuple(out)


GQA_HEADS = [(32, 8, 128), (64, 8, 128), (28, 4, 128), (32, 8, 64)]
MHA_HEADS = [(32, 32, 128), (32, 32, 64)]

GQA_QUICK = (
    Shape(4, 32, 8, 4096, 128, False),
    Shape(4, 32, 8, 4096, 128, True),
    Shape(16, 28, 4, 1024, 128, False),
    Shape(1, 32, 8, 16384, 64, True),
)
MHA_QUICK = (
    Shape(4, 32, 32, 4096, 128, False),
    Shape(4, 32, 32, 4096, 128, True),
    Shape(16, 32, 32, 1024, 64, False),
    Shape(1, 32, 32, 16384, 64, True),
)

SMOKE_GQA = (
    Shape(1, 4, 1, 64, 64, False, "float16"),
    Shape(1, 4, 2, 128, 64, True, "float16"),
)
SMOKE_MHA = (
    Shape(1, 2, 2, 64, 64, False, "float16"),
    Shape(1, 2, 2, 128, 64, True, "float16"),
)

# GPU covering set: every S, B in 1..3, G in {1,4,7,8} (Hkv = 1 and Hkv > 1), D in {64,128},
# causal both ways, a custom scale, fp16 beside bf16 and one transposed-view layout.
GQA_GPU_VALIDATION = (
    Shape(1, 1, 1, 1, 64, False),
    Shape(2, 4, 1, 1, 128, True),
    Shape(1, 4, 1, 17, 64, True),
    Shape(3, 7, 1, 17, 128, False, sm_scale=0.3),
    Shape(1, 8, 1, 127, 128, True),
    Shape(2, 8, 2, 127, 64, False, "float16"),
    Shape(1, 7, 1, 1000, 64, False),
    Shape(2, 4, 2, 1000, 128, True, sm_scale=0.05),
    Shape(1, 8, 1, 3001, 128, False),
    Shape(1, 4, 1, 3001, 64, True, "float16"),
    Shape(3, 1, 1, 127, 128, False),
    Shape(1, 12, 3, 1000, 128, False, layout="bshd"),
    Shape(2, 16, 2, 127, 64, True, sm_scale=0.2),
    Shape(1, 28, 4, 1000, 128, True),
    Shape(2, 32, 8, 3001, 128, True, "float16", sm_scale=0.1),
    Shape(1, 2, 2, 17, 64, True, layout="bshd"),
)
# Quick suite (pre-screen): causal both ways, G = 4 / 7 and Hkv == Hq, odd S (17, 127, 1000),
# D 64 and 128, one fp16, one custom scale, one transposed view; ~5 checks' worth of work.
GQA_QUICK_VALIDATION = (
    Shape(1, 8, 2, 1000, 128, True),
    Shape(2, 4, 4, 127, 64, False, "float16", sm_scale=0.3),
    Shape(1, 7, 1, 17, 64, True),
    Shape(1, 12, 3, 1000, 128, False, layout="bshd"),
    Shape(2, 32, 8, 127, 128, False),
)
GQA_CPU_VALIDATION = (
    Shape(1, 1, 1, 17, 64, False, "float16"),
    Shape(1, 4, 1, 127, 64, True, "float16"),
    Shape(2, 7, 1, 17, 128, True, "float16", sm_scale=0.3),
    Shape(1, 8, 1, 1, 128, False, "float16"),
    Shape(1, 4, 2, 33, 64, False, "float16", sm_scale=0.2, layout="bshd"),
)


def mha_only(shapes: tuple[Shape, ...]) -> tuple[Shape, ...]:
    """The MHA target's validation: the same covering set with Hkv = Hq (G = 1)."""
    return tuple(replace(s, Hkv=s.Hq) for s in shapes)




# the interpreter checks one kind per validation shape, cycling in this order
KINDS = ("gaussian", "needle", "large_rows", "near_const_v")

CONTRACT = '''def attention(q, k, v, *, causal=False, sm_scale=None):
    """Attention forward: softmax(q @ k^T * sm_scale [+ causal mask]) @ v.

    q: [B, Hq, S, D]; k, v: [B, Hkv, S, D]; Hq % Hkv == 0 (query head h reads
    kv head h // (Hq // Hkv)); bf16 or fp16 on the GPU (fp16 in the CPU
    interpreter); D 64 or 128; S any length (not a multiple of the block
    size); any strides (validation holds a transposed view). causal: query i
    sees keys j <= i (top-left aligned). sm_scale None means 1/sqrt(D).
    Returns a new tensor like q (shape, dtype, device), never an alias of an
    input; inputs must not be modified.
    """'''


def make_inputs(shape: Shape, seed: int, kind: str, device: str) -> Call:
    q, k, v = _inputs.make_inputs(shape, seed, kind, device)
    return Call((q, k, v), kwargs(shape))


def kwargs(shape: Shape) -> dict:
    kw: dict = {"causal": shape.causal}
    if shape.sm_scale is not None:
        kw["sm_scale"] = shape.sm_scale
    return kw


def empty_inputs(shape: Shape, device: str) -> Call:
    return Call(_precompile.empty_inputs(shape, device), kwargs(shape))


def reference(call: Call, shape: Shape, rows=None):
    return _reference.reference(*call.args[:3], causal=shape.causal, sm_scale=shape.scale, rows=rows)


def lowp(call: Call, shape: Shape, rows=None):
    return _reference.torch_lowp(*call.args[:3], causal=shape.causal, sm_scale=shape.scale, rows=rows)


def flops(shape: Shape) -> float:
    return shape.flops()


def baselines() -> dict:
    """``{"cuda": ..., "cpu": ...}`` factories (evaluator/baselines.py), in timing order."""
    b = _baselines
    return {"cuda": {"cudnn": lambda: b.sdpa_backend("CUDNN_ATTENTION"),
                     "flash": lambda: b.sdpa_backend("FLASH_ATTENTION"),
                     "flex": b.flex},
            "cpu": {"sdpa-cpu": b.sdpa_cpu}}
