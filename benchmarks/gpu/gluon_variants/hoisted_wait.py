"""The Gluon seed with the plain kernel's V wait back at the top of the iteration, as
before session 5 (issue 20; it now waits for V(j-1) just before, not just after, issuing
QK^T(j)): nothing separates the softmax from the wgmma wait below it, so ptxas retires
PV(j-1) before the softmax (`sm90_compile.py` shows "ex2 ovl" 0). The warp-specialised
D=128 kernel already waits that way in the seed: with the overlap it measured 12% slower
on an H100 (benchmarks/results/2026-12-06-h100-session6/). The A/B of the
intra-warpgroup overlap, on a GPU (`run.sh gluon-ab` does this):

    python3 benchmarks/gpu/gluon_variants/hoisted_wait.py /tmp/gqa_gluon_hoisted.py
    python3 benchmarks/compare.py seeds/gqa_gluon.py /tmp/gqa_gluon_hoisted.py --target gqa
"""

from __future__ import annotations

import sys
from pathlib import Path

SEED = Path(__file__).resolve().parents[3] / "seeds" / "gqa_gluon.py"
JIT = "\n@gluon.jit\n"
K_WAIT = "mbarrier.wait(k_bars.index(slot), (j // STAGES) & 1)\n"
V_WAIT = "mbarrier.wait(v_bars.index(slot), (j // STAGES) & 1)\n"
V_PREV = "        mbarrier.wait(v_bars.index(prev), ((j - 1) // STAGES) & 1)\n"
LAST = "    last = (n_tiles - 1) % STAGES   # V(last) was waited for above\n"
V_LAST = ("    last = (n_tiles - 1) % STAGES\n"
          "    mbarrier.wait(v_bars.index(last), ((n_tiles - 1) // STAGES) & 1)\n")


def hoisted(source: str) -> str:
    """`source` (the seed) with each loop's V wait back at the top of the iteration."""
    parts = source.split(JIT)
    loops = [i for i, part in enumerate(parts) if V_WAIT in part]
    if not loops or any(parts[i].count(V_WAIT) != 1 or parts[i].count(K_WAIT) != 1
                        or parts[i].count(LAST) != 1 for i in loops):
        raise ValueError("no consumer loop of the seed waits for V(j) after the softmax")
    for i in loops:
        parts[i] = (parts[i].replace(V_WAIT, "\n").replace(K_WAIT, K_WAIT + V_PREV)
                    .replace(LAST, V_LAST))
    return JIT.join(parts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    Path(sys.argv[1]).write_text(hoisted(SEED.read_text()))
