"""Run one candidate under the runtime guard only (no static check), like the worker does.

    python tests/guard_harness.py CANDIDATE.py SCRATCH_DIR

Prints one JSON line ``{"outcome": ..., "message": ...}``: ``forbidden`` (GuardViolation
or a check_integrity message), ``contract`` (not a plain torch.Tensor), ``ok``, or
``error`` (anything else, with the exception). Used by tests/test_adversarial.py to
prove the guard stops cheats that a static-check bypass would let through.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path


def main() -> None:
    cand, scratch = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import triton  # noqa: F401

    from evaluator import guard

    g = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(1, 4, 40, 32, generator=g).to(device, torch.float16)
    k = torch.randn(1, 2, 40, 32, generator=g).to(device, torch.float16)
    v = torch.randn(1, 2, 40, 32, generator=g).to(device, torch.float16)
    os.chdir(scratch)
    guard.install(scratch_dir=scratch, candidate_path=cand)
    result = {"outcome": "ok", "message": ""}
    try:
        spec = importlib.util.spec_from_file_location("candidate_0", str(cand))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["candidate_0"] = mod
        spec.loader.exec_module(mod)
        msg = guard.check_integrity()
        out = None
        for causal in (False, True):
            if msg:
                break
            out = mod.attention(q, k, v, causal=causal)
            if device == "cuda":
                torch.cuda.synchronize()
            msg = guard.check_integrity()
        if msg:
            result = {"outcome": "forbidden", "message": msg}
        elif type(out) is not torch.Tensor:
            result = {"outcome": "contract", "message": f"returned {type(out).__name__}"}
    except guard.GuardViolation as exc:
        result = {"outcome": "forbidden", "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - reported, the test decides
        msg = guard.check_integrity()
        result = ({"outcome": "forbidden", "message": msg} if msg else
                  {"outcome": "error", "message": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
