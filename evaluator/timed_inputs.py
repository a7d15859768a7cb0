"""The inputs of timed calls, built identically by the worker (timing) and the trusted
checker (re-check of sampled outputs) from the plan's secret seed.

A target without shared inputs: call n is ``make_inputs(shape, timed_seed(n),
timed_kind(n))``, fresh values and storage every call (timing.py keeps a few sets alive
so addresses rotate). This is the path of gqa and mha, unchanged.

A target with shared inputs (``make_shared`` + ``make_call``, see
evaluator/targets/plugin.py): the large tensors are built once per (shape, pass) from
``shared_seed`` / ``shared_kind`` -- separately for every side and baseline, one set at a
time, never rotated or copied -- and call n is ``make_call(shape, shared, timed_seed(n),
timed_kind(n))``: fresh small inputs (a new query every call, so an output cached by
address or content is wrong for the next call) plus slices planted into the shared
tensors. `settle` undoes those after the call. With ``verify``, a keyed digest of the
shared tensors is taken before the first call and compared after the last
(`check_unchanged`): a candidate must not modify its inputs, shared ones included.
Leaving the ``with`` block frees the shared tensors and the allocator's cached blocks,
so the next shape starts from an empty device.
"""

from __future__ import annotations

from typing import Any

from evaluator.inputs import derive_seed
from evaluator.plan import shared_kind, shared_seed, timed_kind, timed_seed

DIGEST_CHUNK = 1 << 24  # 2-byte words per weighted sum: 3 x 64 MiB of temporaries


class InputsModified(Exception):
    """A shared input's digest changed across the timed calls (the candidate wrote to it)."""


class TimedInputs:
    """``make(n)`` -> call n's `Call` of one (shape, pass); a context manager."""

    def __init__(self, target: Any, shape: Any, seed: int, kinds: list[str] | tuple[str, ...],
                 idx: int, p: int, device: str, *, verify: bool = False):
        self.target, self.shape, self.seed, self.kinds = target, shape, seed, list(kinds)
        self.idx, self.p, self.device = idx, p, device
        self.shared = None
        self._key = derive_seed(seed, "digest", idx, p)
        self._before: list[int] | None = None
        if target.shares_inputs:
            self.shared = target.make_shared(shape, shared_seed(seed, idx, p),
                                             shared_kind(self.kinds, seed, idx, p), device)
            if verify:
                self._before = digest(list(self.shared.tensors.values()), self._key)

    def __call__(self, n: int) -> Any:
        seed = timed_seed(self.seed, self.idx, self.p, n)
        kind = timed_kind(self.kinds, self.seed, self.idx, self.p, n)
        if self.shared is None:
            return self.target.make_inputs(self.shape, seed, kind, self.device)
        return self.target.make_call(self.shape, self.shared, seed, kind, self.device)

    @property
    def settle(self):
        """The harness's after-call hook: undo the planted slices (None without shared inputs)."""
        return self.shared.undo if self.shared is not None else None

    def check_unchanged(self) -> None:
        """`InputsModified` when a shared tensor differs from its state before the first call."""
        if self.shared is None or self._before is None:
            return
        self.shared.undo()
        after = digest(list(self.shared.tensors.values()), self._key)
        if after != self._before:
            names = ", ".join(self.shared.tensors)
            raise InputsModified(f"the candidate modified a shared input ({names}) during timing")

    def close(self) -> None:
        if self.shared is None:
            return
        self.shared.undo()
        self.shared = None
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def __enter__(self) -> "TimedInputs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def digest(tensors: list[Any], key: int) -> list[int]:
    """A keyed digest of the tensors' whole storage: per chunk of 2-byte words (bytes when
    the size is odd), sum(word * w) with secret weights w in [1, 2^15) drawn from ``key``.
    Exact integer arithmetic (|word * w| < 2^30, a chunk's sum < 2^54): changing any one
    word changes its chunk's sum; cancelling changes needs the weights, which exist on
    the device only while this runs (zeroed before they are freed)."""
    import torch

    out: list[Any] = []
    for t in tensors:
        raw = torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())
        words = raw.view(torch.int16) if raw.numel() % 2 == 0 else raw
        gen = torch.Generator(device=t.device)
        gen.manual_seed(key)
        n = min(DIGEST_CHUNK, words.numel())
        w = torch.randint(1, 1 << 15, (n,), generator=gen, device=t.device, dtype=torch.int32)
        for start in range(0, words.numel(), DIGEST_CHUNK):
            c = words[start:start + DIGEST_CHUNK].to(torch.int32)
            out.append(torch.mul(c, w[:c.numel()]).sum(dtype=torch.int64))
        w.zero_()
        del w
    return [int(x) for x in torch.stack(out).tolist()] if out else []
