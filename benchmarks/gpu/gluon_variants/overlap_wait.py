"""The Gluon seed with every consumer loop waiting for V(j) between the softmax and the PV
wait, as in session 5 (issue 20): the inverse of `hoisted_wait.py`. The seed does this in
its plain kernel only; this file also gives the warp-specialised D=128 loop the
intra-warpgroup overlap, which measured 12-16 % slower there on an H100
(benchmarks/results/2026-12-06-h100-session6/). `run.sh gluon-d128` times both ways.

``--convert-first``: also convert P to 16 bits before the PV wait, in every loop. Written
as in the seed (``p_op = convert_layout(p.to(dtype))`` after the wait), the compiler
places all the conversions after the wait (they reuse the registers PV(j-1) still reads),
so the next wgmmas wait for them; passing the converted P through the wait's ``deps``
keeps them before it, interleaved with the exp2s (SASS, sm_90a: every F2FP of the loop
before ``WARPGROUP.DEPBAR.LE gsb0, 0x0``; same 168 registers, no spills). Not measured.

    python3 benchmarks/gpu/gluon_variants/overlap_wait.py [--convert-first] OUT.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from hoisted_wait import JIT, LAST, SEED, V_LAST, V_PREV, V_WAIT

LOOP = "    for j in range(1, n_tiles):\n"
V_FIRST = "    mbarrier.wait(v_bars.index(0), 0)\n"
PV_WAIT = "        acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))\n"
CONVERT = "        p_op = gl.convert_layout(p.to(dtype), p_layout)\n"
P_LO = "        p_lo = p.to(dtype)   # converted before the wait\n"
PV_WAIT_LO = "        acc, p_op, p_lo = warpgroup_mma_wait(0, deps=(acc, p_op, p_lo))\n"
CONVERT_LO = "        p_op = gl.convert_layout(p_lo, p_layout)\n"
WAIT_V = "        " + V_WAIT


def overlapped(source: str, convert_first: bool = False) -> str:
    """`source` (the seed) with each loop's V wait between the softmax and the PV wait;
    `convert_first`: P converted to 16 bits before that wait too."""
    parts = source.split(JIT)
    for i, part in enumerate(parts):
        if V_PREV in part:
            if not (part.count(V_PREV) == part.count(V_LAST) == part.count(PV_WAIT)
                    == part.count(LOOP) == 1):
                raise ValueError("a consumer loop of the seed is not in the expected form")
            part = part.replace(V_PREV, "").replace(V_LAST, LAST)
            part = part.replace(PV_WAIT, WAIT_V + PV_WAIT)
            if V_FIRST not in part:
                part = part.replace(LOOP, V_FIRST + LOOP)
        if convert_first and WAIT_V in part:
            loop = part[part.index(LOOP):]
            if not (loop.count(WAIT_V) == loop.count(PV_WAIT) == loop.count(CONVERT) == 1):
                raise ValueError("a consumer loop of the seed is not in the expected form")
            loop = (loop.replace(WAIT_V, P_LO + WAIT_V).replace(PV_WAIT, PV_WAIT_LO)
                    .replace(CONVERT, CONVERT_LO))
            part = part[:part.index(LOOP)] + loop
        parts[i] = part
    return JIT.join(parts)


if __name__ == "__main__":
    args = sys.argv[1:]
    first = "--convert-first" in args
    args = [a for a in args if a != "--convert-first"]
    if len(args) != 1:
        sys.exit(__doc__)
    Path(args[0]).write_text(overlapped(SEED.read_text(), first))
