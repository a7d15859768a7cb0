"""The GPU gate: the worker asks for its GPU before the first GPU work (worker side).

An evaluation's CPU-heavy part (import, precompile: discovery launches nothing) may run
while another evaluation holds the GPU; its GPU part (baselines when it times them,
correctness, the checker, timing, profile) runs only once the caller's gate let it in
(``evaluate(..., acquire_gpu=...)``: spawn.drive_worker asks for it, runner.py gives it
back once the worker and the checker are gone). Worker side, ``ask``: write a
token-marked ``out/compiled.json`` (the phase 1 token: a forged file only asks for the
gate earlier), announce ``awaiting-gpu``, block on stdin for the line ``gpu``. Trusted
code before the gate (CUDA context, env info) launches no kernel.

Before the gate, candidate code (its import, its host code during discovery) must not
put work on the GPU that another evaluation is timing: a trusted ``LaunchRefuser`` in
Triton's ``launch_enter_hook`` chain makes every Triton launch raise ``LaunchRefused``
(the kernel does not run); ``lift`` removes it at the gate and reports tampering (the
chain replaced or the refuser removed). It is a barrier against the ordinary case, not
the guarantee: why pre-gate GPU work cannot raise a candidate's own score is in the
worker's docstring.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

READY = "compiled.json"
GO = "gpu"


class LaunchRefused(RuntimeError):
    """A Triton launch before this evaluation was given its GPU."""


class LaunchRefuser:
    """The trusted launch hook in force before the gate: refuses every Triton launch."""

    def __init__(self) -> None:
        self.refused = 0
        self.chain: Any = None  # the HookChain it was added to
        self.call: Any = None  # that chain's class __call__ at the time

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.refused += 1
        raise LaunchRefused("a Triton kernel launch before the evaluator's GPU gate (import "
                            "and precompile discovery run without the GPU)")


def _knobs() -> Any:
    from evaluator.precompile import _runtime_knobs

    return _runtime_knobs()


def install() -> LaunchRefuser:
    """Add a refuser to Triton's launch_enter_hook chain (trusted code, before the import)."""
    ref = LaunchRefuser()
    ref.chain = _knobs().launch_enter_hook
    ref.call = type(ref.chain).__call__
    ref.chain.add(ref)
    return ref


def lift(ref: LaunchRefuser) -> str | None:
    """Remove the refuser at the gate; a tampering message when it was not in force."""
    try:
        chain = _knobs().launch_enter_hook
        calls = chain.calls
        intact = chain is ref.chain and type(chain).__call__ is ref.call \
            and type(calls) is list and ref in calls
    except Exception:  # noqa: BLE001 - the path Triton reads was tampered with
        return "Triton's launch hooks were replaced before the GPU gate"
    if not intact:
        return "the evaluator's launch refuser was removed before the GPU gate"
    ref.chain.remove(ref)
    return None


def ask(out_dir: Path, token: str | None, announce: Callable[[str], None]) -> None:
    """Tell the parent the GPU part is next and block until it sends ``gpu``."""
    tmp = out_dir / "compiled.tmp"
    tmp.write_text(json.dumps({"gate_token": token}))
    announce("awaiting-gpu")
    os.replace(tmp, out_dir / READY)
    line = sys.stdin.readline()
    if line.strip() != GO:
        from evaluator.failures import CandidateFailure

        raise CandidateFailure("internal", "the parent did not give the worker its GPU")
