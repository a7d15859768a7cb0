"""The Gluon seed with every consumer loop waiting for V(j) between the softmax and the PV
wait, as in session 5 (issue 20): the inverse of `hoisted_wait.py`. The seed does this in
its plain kernel only; this file also gives the warp-specialised D=128 loop the
intra-warpgroup overlap, which measured 12-16 % slower there on an H100
(benchmarks/results/2026-12-06-h100-session6/). `run.sh gluon-d128` times both ways:

    python3 benchmarks/gpu/gluon_variants/overlap_wait.py /tmp/gqa_gluon_overlap.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from hoisted_wait import JIT, LAST, SEED, V_LAST, V_PREV, V_WAIT

LOOP = "    for j in range(1, n_tiles):\n"
V_FIRST = "    mbarrier.wait(v_bars.index(0), 0)\n"
PV_WAIT = "        acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))\n"


def overlapped(source: str) -> str:
    """`source` (the seed) with each loop's V wait between the softmax and the PV wait."""
    parts = source.split(JIT)
    loops = [i for i, part in enumerate(parts) if V_PREV in part]
    for i in loops:
        part = parts[i]
        if not (part.count(V_PREV) == part.count(V_LAST) == part.count(PV_WAIT)
                == part.count(LOOP) == 1):
            raise ValueError("a consumer loop of the seed is not in the expected form")
        part = part.replace(V_PREV, "").replace(V_LAST, LAST)
        part = part.replace(PV_WAIT, "        " + V_WAIT + PV_WAIT)
        if V_FIRST not in part:
            part = part.replace(LOOP, V_FIRST + LOOP)
        parts[i] = part
    return JIT.join(parts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    Path(sys.argv[1]).write_text(overlapped(SEED.read_text()))
