"""Test candidates: `honest.py` plus a table of small patches, one per broken behaviour.

    from candidates.make import path   # tests/ is on sys.path under pytest
    evaluate(path("wrong_numbers"), "gqa", "smoke")

`path(name)` is `tests/candidates/<name>.py` for the candidates that are really different
files (honest, aborts, gpu_hang, import_error, no_attention, syntax_error), and otherwise
a file generated once per process from `honest.py` and PATCHES (its docstring says what
is broken and the failure class the evaluator must give). Each patch replaces a text that
occurs exactly once in `honest.py`, so a change to the honest kernel that moves an anchor
fails loudly here instead of silently testing something else.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
HONEST = HERE / "honest.py"

_OUT_OF_BOUNDS = ("    l_i = tl.where(l_i == 0.0, 1.0, l_i)\n",
                  "    l_i = tl.where(l_i == 0.0, 1.0, l_i) + tl.load(Q + (1 << 44)).to(tl.float32) * 0.0\n")
_RETURN = "    return o\n"

# name -> (what is broken (expected class), [(text in honest.py, replacement), ...])
PATCHES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "wrong_numbers": ("the honest kernel with outputs scaled by 1.02 (expect `mismatch`)",
                      [("    out = acc / l_i[:, None]\n", "    out = acc / l_i[:, None] * 1.02\n")]),
    "nan_output": ("writes NaN into query row 3 of every head (expect `nonfinite`)",
                   [("    out = acc / l_i[:, None]\n", "    out = acc / l_i[:, None]\n"
                     "    out = tl.where(offs_m[:, None] == 3, float(\"nan\"), out)\n")]),
    "ignores_causal": ("never applies the causal mask (expect `mismatch`)",
                       [("CAUSAL=causal,", "CAUSAL=False,")]),
    "ignores_scale": ("always uses 1/sqrt(D), ignoring `sm_scale` (expect `mismatch`)",
                      [("    if sm_scale is None:\n        sm_scale", "    sm_scale")]),
    "assumes_mha": ("maps query head h to kv head h % Hkv instead of h // G, i.e. assumes the MHA "
                    "layout (right only when Hkv == Hq or Hkv == 1) (expect `mismatch`)",
                    [("    hk = h // G\n", "    hk = h % (Hq // G)\n")]),
    "mean_v": ("launches the honest kernel, then returns mean(V) broadcast over the query rows -- "
               "a shortcut that passes loose allclose checks on torch.rand inputs (expect `mismatch`)",
               [(_RETURN, "    m = v.float().mean(dim=2, keepdim=True).to(q.dtype)\n"
                 "    return m.repeat_interleave(Hq // Hkv, dim=1).expand(B, Hq, S, D).contiguous()\n")]),
    "infinite_loop": ("spins forever in the Python wrapper (expect `timeout`)",
                      [("    Hkv = k.shape[1]\n", "    Hkv = k.shape[1]\n    n = 0\n    while n >= 0:\n"
                        "        n += 1\n")]),
    "segfault": ("an unmasked load far out of bounds. In the CPU interpreter the process dies with "
                 "SIGSEGV (expect `runtime`); on a GPU it is an illegal address (`cuda_fault`)",
                 [_OUT_OF_BOUNDS]),
    "gpu_illegal_address": ("an unmasked load 2^44 elements past Q -- an illegal memory access on "
                            "a GPU (expect `cuda_fault`; the next evaluation on the same GPU must work)",
                            [_OUT_OF_BOUNDS]),
    "gpu_oom": ("asks for a 1 TiB workspace on every call (expect `oom`)",
                [("    o = torch.empty((B, Hq, S, D)", "    workspace = torch.empty((1 << 40,), "
                  "dtype=torch.uint8, device=q.device)\n    del workspace\n    o = torch.empty((B, Hq, S, D)")]),
    "wrong_shape": ("drops the last query row of the output (expect `contract`)",
                    [(_RETURN, "    return o[:, :, : max(S - 1, 1)]\n")]),
    "wrong_dtype": ("returns the output in fp32 (expect `contract`)",
                    [(_RETURN, "    return o.float()\n")]),
    "returns_input": ("writes the output into q's storage and returns q (expect `contract`)",
                      [("    o = torch.empty((B, Hq, S, D), dtype=q.dtype, device=q.device)\n",
                        "    o = q\n")]),
    "unwritten": ("computes only the first BLOCK_M query rows, leaving the rest of the `torch.empty` "
                  "output unwritten (expect `unwritten` or `nonfinite`/`mismatch`)",
                  [("    grid = (triton.cdiv(S, CONFIG[\"BLOCK_M\"]), B * Hq)\n", "    grid = (1, B * Hq)\n")]),
    "mutates_input": ("correct output, but scales q in place afterwards (expect `mutation`)",
                      [(_RETURN, "    q.mul_(1.0)\n    q.add_(1.0)\n" + _RETURN)]),
    "nondeterministic": ("every second call nudges one output element by one ulp -- within the error "
                         "bound, but not bitwise reproducible (expect `nondeterministic`)",
                         [("\nCONFIG = {", "\n_CALLS = [0]\nCONFIG = {"),
                          (_RETURN, "    _CALLS[0] += 1\n    if _CALLS[0] % 2 == 0:\n"
                           "        o.view(-1)[0] = o.view(-1)[0] * (1.0 + 2.0 ** -9)\n" + _RETURN)]),
}

_DIR: Path | None = None
_LOCK = threading.Lock()  # tests generate candidates from a thread pool


def source(name: str) -> str:
    """The text of candidate `name`: a file of its own, or honest.py with its patches."""
    own = HERE / f"{name}.py"
    if own.is_file() and name != "make":
        return own.read_text(encoding="utf-8")
    if name not in PATCHES:
        raise KeyError(f"no test candidate {name!r}")
    what, edits = PATCHES[name]
    text = HONEST.read_text(encoding="utf-8")
    body = text[text.index('"""', 3) + 3:]  # honest.py's own docstring goes
    for old, new in edits:
        if body.count(old) != 1:
            raise ValueError(f"{name}: patch anchor {old!r} occurs {body.count(old)} times in honest.py")
        body = body.replace(old, new)
    return f'"""Broken test candidate (made from honest.py): {what}."""' + body


def path(name: str) -> Path:
    """A file holding candidate `name` (generated ones in a temporary folder per process)."""
    global _DIR
    own = HERE / f"{name}.py"
    if own.is_file() and name != "make":
        return own
    with _LOCK:
        if _DIR is None:
            _DIR = Path(tempfile.mkdtemp(prefix="evolve-test-candidates-"))
        out = _DIR / f"{name}.py"
        if not out.is_file():
            out.write_text(source(name), encoding="utf-8")
    return out
