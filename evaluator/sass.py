"""What the SASS of a compiled Hopper kernel says about its wgmma overlap (issue 20).

An FA3-style loop issues QK^T(j) and PV(j-1) asynchronously, retires QK^T(j) with
``warpgroup_mma_wait(1)``, runs the softmax of tile j while PV(j-1) is still on the tensor
cores, then ``warpgroup_mma_wait(0)``. ptxas may hoist that second wait above the softmax
(the PTX wait has no register operands, so nothing pins it), which silently turns the
overlap off. ``ex2_in_flight`` reads it off the SASS: the fewest ``MUFU.EX2`` between a
``WARPGROUP.DEPBAR.LE gsb0, 0x1`` and the next ``... 0x0`` (0: the overlap is gone; None:
the kernel never waits with a group in flight, as `tl` kernels). Used by the worker's
compile info when a profile is requested, and by benchmarks/sm90_compile.py.

    ex2_in_flight(nvdisasm_text)          # from SASS text
    cubin_ex2_in_flight(cubin, tmpdir)    # runs nvdisasm from Triton's wheel
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

_EVENTS = re.compile(r"WARPGROUP\.DEPBAR\.LE gsb0, 0x[01]\b|MUFU\.EX2")
# a PTX that waits with a wgmma group still in flight somewhere (else there is no overlap
# to look for, and no disassembly is spent on it)
WAITS_IN_FLIGHT = re.compile(r"wgmma\.wait_group\.sync\.aligned\s+[1-9]")


def ex2_in_flight(sass: str) -> int | None:
    """The fewest exp2s issued between a wait that leaves one wgmma group in flight and
    the next wait for all of them, over the kernel's loops; None when there is none."""
    counts: list[int] = []
    n: int | None = None
    for ev in _EVENTS.findall(sass):
        if ev.endswith("0x1"):
            n = 0
        elif ev.endswith("0x0"):
            if n is not None:
                counts.append(n)
            n = None
        elif n is not None:
            n += 1
    return min(counts) if counts else None


def nvdisasm_path() -> Path:
    """nvdisasm beside the ptxas Triton uses for sm_90."""
    from triton.backends.nvidia.compiler import get_ptxas

    return Path(get_ptxas(90).path).with_name("nvdisasm")


def cubin_ex2_in_flight(cubin: bytes, tmpdir: str | None = None, timeout: float = 30.0
                        ) -> int | None:
    """`ex2_in_flight` of a cubin (written to a temporary file under ``tmpdir``)."""
    fd, path = tempfile.mkstemp(suffix=".cubin", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cubin)
        r = subprocess.run([str(nvdisasm_path()), "-c", path], capture_output=True,
                           text=True, timeout=timeout)
    finally:
        os.unlink(path)
    return ex2_in_flight(r.stdout) if r.returncode == 0 else None
