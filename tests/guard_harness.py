"""Run candidates under the runtime guard only (no static check), like the worker does.

    python tests/guard_harness.py SCRATCH_BASE CANDIDATE.py [CANDIDATE.py ...]

torch and triton are imported once; each candidate then runs in a forked child (the
guard is irreversible, so every candidate needs a fresh process) with its own scratch
directory. Prints one JSON line per candidate, ``{"file", "outcome", "message"}``:
``forbidden`` (GuardViolation or a check_integrity message), ``contract`` (not a plain
torch.Tensor), ``ok``, or ``error`` (anything else). Used by tests/test_adversarial.py
to show that the guard stops the cheats a static-check bypass would let through.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path


def run_one(cand: Path, scratch: Path) -> dict:
    from evaluator import sandbox

    sandbox.make_scratch(scratch)  # the worker's layout and caches (HOME, TMPDIR, Triton's)
    env = sandbox.scrubbed_env(scratch, None, "none")
    os.environ.update({k: env[k] for k in ("HOME", "TMPDIR", "TRITON_CACHE_DIR", "TRITON_HOME",
                                           "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR")})
    tempfile.tempdir = None
    import torch

    from evaluator import guard

    from evaluator.targets import get_target

    device = "cuda" if torch.cuda.is_available() else "cpu"   # asked in the child: no CUDA before fork
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(1, h, 40, 32, generator=g).to(device, torch.float16) for h in (4, 2, 2))
    calls = [((q, k, v), {"causal": causal}) for causal in (False, True)]
    if cand.stem.startswith("decode"):  # seeds of the decode target: its own contract
        t = get_target("decode")
        calls = [(c.args, c.kwargs) for c in (t.make_inputs(sh, 0, t.kinds[0], device)
                                              for sh in t.suite("smoke"))]
    os.chdir(scratch)
    from evaluator import precompile

    precompile.preimport_kernel_libraries()  # as the worker: Triton's driver made by trusted code
    guard.install(scratch_dir=scratch, candidate_path=cand)
    try:
        spec = importlib.util.spec_from_file_location("candidate_0", str(cand))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["candidate_0"] = mod
        spec.loader.exec_module(mod)
        msg = guard.check_integrity()
        out = None
        for args, kwargs in calls:
            if msg:
                break
            out = mod.attention(*args, **kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            msg = guard.check_integrity()
        if msg:
            return {"outcome": "forbidden", "message": msg}
        if type(out) is not torch.Tensor:
            return {"outcome": "contract", "message": f"returned {type(out).__name__}"}
        return {"outcome": "ok", "message": ""}
    except guard.GuardViolation as exc:
        return {"outcome": "forbidden", "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - reported, the test decides
        msg = guard.check_integrity()
        return ({"outcome": "forbidden", "message": msg} if msg else
                {"outcome": "error", "message": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    sys.dont_write_bytecode = True   # no __pycache__ next to the adversarial files
    base = Path(sys.argv[1]).resolve()
    if not any(Path("/dev").glob("nvidia[0-9]*")):   # decided without touching CUDA before fork
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch  # noqa: F401  (imported once, before the forks; CUDA is not touched here)
    import triton  # noqa: F401

    for i, arg in enumerate(sys.argv[2:]):
        cand = Path(arg).resolve()
        scratch = base / f"c{i}"
        scratch.mkdir(parents=True, exist_ok=True)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            res = run_one(cand, scratch)
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        res = json.loads(data) if data else {"outcome": "error", "message": f"child died ({status})"}
        print(json.dumps({"file": cand.name, **res}), flush=True)


if __name__ == "__main__":
    main()
