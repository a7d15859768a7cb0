"""Seeded input generation (prefill attention's, and `derive_seed` for every target).
Worker and checker regenerate identical tensors from a seed.

Every check and every timed call draws its own 63-bit seed from the evaluation's secret
master seed and a label (``derive_seed``); tensors come from a ``torch.Generator`` on
the evaluation device, so the trusted checker, spawned later on the same device,
regenerates bit-identical inputs without ever receiving them from the worker.

Input kinds (all drawn fp32, then cast to the shape's dtype):

``gaussian``      q, k, v ~ N(0, 1).
``large_rows``    gaussian, with ~1/8 of the query rows scaled by U(8, 30): very peaky
                  softmax rows that break approximate exp / missing max-subtraction.
``needle``        gaussian, plus up to 4 "needle" rows per kv head: for query row i one
                  visible key j (j <= i when causal) is set to q_i * 40 / (|q_i|^2 * scale),
                  so its score is 40 and the softmax puts ~all weight on it: the output
                  row must equal v_j. Catches kernels that attend to a window or block subset.
``near_const_v``  v = c + 0.05 * noise with c = +-U(1, 3) per (batch, head): the output is
                  c plus a small signal, so mean(V)-style shortcuts and normalisation errors
                  fail the relative error bound.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from evaluator.targets.prefill import Shape

KINDS = ("gaussian", "large_rows", "needle", "near_const_v")
NEEDLE_SCORE = 40.0


def derive_seed(master: int, *labels: object) -> int:
    """A 63-bit seed from the master secret and a label path (stable across processes)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(int(master)).encode())
    for lab in labels:
        h.update(b"\x00" + str(lab).encode())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def torch_dtype(name: str) -> "torch.dtype":
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def make_inputs(shape: Shape, seed: int, kind: str = "gaussian", device: str = "cpu"):
    """Return fresh ``(q, k, v)`` for ``shape`` (layout respected: ``bshd`` gives views)."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"unknown input kind {kind!r}")
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    B, Hq, Hkv, S, D = shape.B, shape.Hq, shape.Hkv, shape.S, shape.D
    f32 = {"generator": gen, "device": device, "dtype": torch.float32}
    q, k, v = (torch.randn(size, **f32) for size in ((B, Hq, S, D), (B, Hkv, S, D), (B, Hkv, S, D)))
    if kind == "large_rows":
        pick = torch.rand((B, Hq, S, 1), generator=gen, device=device) < 0.125
        factor = 8.0 + 22.0 * torch.rand((B, Hq, S, 1), generator=gen, device=device)
        q = torch.where(pick, q * factor, q)
    elif kind == "needle":
        _plant_needles(q, k, shape, gen, device)
    elif kind == "near_const_v":
        c = 1.0 + 2.0 * torch.rand((B, Hkv, 1, 1), generator=gen, device=device)
        sign = torch.where(torch.rand((B, Hkv, 1, 1), generator=gen, device=device) < 0.5, -1.0, 1.0)
        v = c * sign + 0.05 * v
    dt = torch_dtype(shape.dtype)
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    if shape.layout == "bshd":
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    return q, k, v


def _plant_needles(q: "torch.Tensor", k: "torch.Tensor", shape: Shape,
                   gen: "torch.Generator", device: str) -> None:
    """Align up to 4 keys per (batch, kv head) with chosen query rows (in place, fp32).

    Vectorised (no per-head host round trips): per (batch, kv head), ``n`` distinct query
    rows and ``n`` distinct keys (stable argsort of uniform draws), a random query head of
    the group for each; causal: a key after its row is redrawn uniformly in ``[0, row]``;
    a key equal to an earlier needle's key of the same head is dropped."""
    import torch

    B, Hkv, S, G = shape.B, shape.Hkv, shape.S, shape.G
    n = min(4, S)

    def pick() -> "torch.Tensor":
        u = torch.rand((B, Hkv, S), generator=gen, device=device)
        return torch.sort(u, dim=-1, stable=True).indices[..., :n]

    rows, keys = pick(), pick()
    heads = torch.randint(0, G, (B, Hkv, n), generator=gen, device=device)
    if shape.causal:
        alt = (torch.rand((B, Hkv, n), generator=gen, device=device) * (rows + 1)).long()
        keys = torch.where(keys > rows, torch.minimum(alt, rows), keys)
    dup = (keys.unsqueeze(-1) == keys.unsqueeze(-2)).tril(-1).any(-1)
    keep = ~dup
    b_idx = torch.arange(B, device=device).view(B, 1, 1).expand(B, Hkv, n)[keep]
    h_idx = torch.arange(Hkv, device=device).view(1, Hkv, 1).expand(B, Hkv, n)[keep]
    i_idx, j_idx = rows[keep], keys[keep]
    qi = q[b_idx, h_idx * G + heads[keep], i_idx]
    k[b_idx, h_idx, j_idx] = qi * (NEEDLE_SCORE / (qi.pow(2).sum(-1, keepdim=True) * shape.scale))
