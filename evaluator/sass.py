"""What the SASS of a compiled Hopper kernel says about its wgmma overlap (issue 20).

An FA3-style loop issues QK^T(j) and PV(j-1) asynchronously, retires QK^T(j) with
``warpgroup_mma_wait(1)``, runs the softmax of tile j while PV(j-1) is still on the tensor
cores, then ``warpgroup_mma_wait(0)``. ptxas may hoist that second wait above the softmax
(the PTX wait has no register operands, so nothing pins it), which silently turns the
overlap off. ``ex2_in_flight`` reads it off the SASS: the fewest ``MUFU.EX2`` between a
``WARPGROUP.DEPBAR.LE gsb0, 0x1`` and the next ``... 0x0`` (0: the overlap is gone; None:
the kernel never waits with a group in flight, as `tl` kernels). ``f2fp_in_flight`` counts
the conversions of P to 16 bits the same way: 0 means they all run after the wait, so the
next wgmmas wait for them. Used for the compile info of an evaluation with a profile (the
worker writes the cubins, the parent disassembles them: the sandbox lets the worker start
no tool but Triton's own), and by benchmarks/sm90_compile.py.

    ex2_in_flight(nvdisasm_text)               # from SASS text (f2fp_in_flight alike)
    opcode_counts(nvdisasm_text)               # {"FFMA": 68, "MUFU": 78, ...}
    cubin_sass(cubin, tmpdir)                  # nvdisasm from Triton's wheel
    fill_overlap(records, sass_dir)            # the parent's half: worker records + cubins
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

MAX_CUBIN_BYTES = 16 << 20
TIMEOUT_S = 20.0
_SASS_FILE = re.compile(r"^\d{1,3}\.cubin$")
_WAIT = r"WARPGROUP\.DEPBAR\.LE gsb0, 0x[01]\b"
# a PTX that waits with a wgmma group still in flight somewhere (else there is no overlap
# to look for, and no disassembly is spent on it)
WAITS_IN_FLIGHT = re.compile(r"wgmma\.wait_group\.sync\.aligned\s+[1-9]")


def in_flight(sass: str, opcode: str) -> int | None:
    """The fewest ``opcode`` instructions issued between a wait that leaves one wgmma group
    in flight and the next wait for all of them, over the kernel's loops; None when there
    is no such pair of waits."""
    counts: list[int] = []
    n: int | None = None
    for ev in re.findall(f"{_WAIT}|{re.escape(opcode)}", sass):
        if ev.endswith("0x1"):
            n = 0
        elif ev.endswith("0x0"):
            if n is not None:
                counts.append(n)
            n = None
        elif n is not None:
            n += 1
    return min(counts) if counts else None


def ex2_in_flight(sass: str) -> int | None:
    """The softmax's exp2s that overlap the previous tile's PV (`in_flight`)."""
    return in_flight(sass, "MUFU.EX2")


def f2fp_in_flight(sass: str) -> int | None:
    """The conversions (F2FP, fp32 pairs to 16 bits) that overlap it (`in_flight`)."""
    return in_flight(sass, "F2FP")


_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", re.M)


def opcode_counts(sass: str) -> dict[str, int]:
    """How many instructions of each base opcode (``FFMA``, ``MUFU``, ``HGMMA``: the part
    before the first ``.``) the SASS text holds, predicated ones included."""
    out: dict[str, int] = {}
    for m in _INSTRUCTION.finditer(sass):
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out


def nvdisasm_path() -> Path:
    """nvdisasm beside the ptxas Triton uses for sm_90."""
    from triton.backends.nvidia.compiler import get_ptxas

    return Path(get_ptxas(90).path).with_name("nvdisasm")


def cubin_sass(cubin: bytes, tmpdir: str | None = None, timeout: float = TIMEOUT_S) -> str | None:
    """The SASS text of a cubin (written to a temporary file under ``tmpdir``)."""
    fd, path = tempfile.mkstemp(suffix=".cubin", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cubin)
        return file_sass(Path(path), timeout)
    finally:
        os.unlink(path)


def file_sass(path: Path, timeout: float = TIMEOUT_S) -> str | None:
    """The SASS text of a cubin file; None when nvdisasm fails on it."""
    r = subprocess.run([str(nvdisasm_path()), "-c", str(path)], capture_output=True,
                       text=True, timeout=timeout)
    return r.stdout if r.returncode == 0 else None


def fill_overlap(records: object, sass_dir: Path, timeout: float = TIMEOUT_S) -> None:
    """Set ``ex2_in_flight`` and ``f2fp_in_flight`` in each compile record of a worker
    report (a list of dicts, changed in place) from the cubin its ``sass_file`` names under
    ``sass_dir``; a record without one gets None, whatever the worker wrote. The cubin came
    from the candidate's process: the name is checked, links refused, the size bounded,
    nvdisasm runs with a timeout, and the numbers are display only (never the score)."""
    if not isinstance(records, list):
        return
    for rec in records:
        if not isinstance(rec, dict):
            continue
        name = rec.pop("sass_file", None)
        rec["ex2_in_flight"] = rec["f2fp_in_flight"] = None
        path = sass_dir / name if isinstance(name, str) and _SASS_FILE.match(name) else None
        try:
            if (path is not None and not path.is_symlink() and path.is_file()
                    and path.stat().st_size <= MAX_CUBIN_BYTES):
                text = file_sass(path, timeout)
                if text is not None:
                    rec["ex2_in_flight"] = ex2_in_flight(text)
                    rec["f2fp_in_flight"] = f2fp_in_flight(text)
        except (OSError, subprocess.SubprocessError):
            pass
