"""The Gluon seed with each loop's V wait back at the top of the iteration, as before
session 5 (issue 20; the plain kernel now waits for V(j-1) just before, not just after,
issuing QK^T(j)): nothing separates the softmax from the wgmma wait below it, so ptxas
retires PV(j-1) before the softmax (`sm90_compile.py` shows "ex2 ovl" 0). The A/B of the
intra-warpgroup overlap, on a GPU (`run.sh gluon-ab` does this):

    python3 benchmarks/gpu/gluon_variants/hoisted_wait.py /tmp/gqa_gluon_hoisted.py
    python3 benchmarks/compare.py seeds/gqa_gluon.py /tmp/gqa_gluon_hoisted.py --target gqa
"""

from __future__ import annotations

import sys
from pathlib import Path

SEED = Path(__file__).resolve().parents[3] / "seeds" / "gqa_gluon.py"
K_WAIT = "mbarrier.wait(k_bars.index(slot), (j // STAGES) & 1)\n"
V_WAIT = "mbarrier.wait(v_bars.index(slot), (j // STAGES) & 1)\n"
V_PREV = "        mbarrier.wait(v_bars.index(prev), ((j - 1) // STAGES) & 1)\n"
LAST = "    last = (n_tiles - 1) % STAGES   # V(last) was waited for above\n"
V_LAST = ("    last = (n_tiles - 1) % STAGES\n"
          "    mbarrier.wait(v_bars.index(last), ((n_tiles - 1) // STAGES) & 1)\n")


def hoisted(source: str) -> str:
    """`source` (the seed) with each loop's V wait back at the top of the iteration."""
    if not source.count(K_WAIT) == source.count(V_WAIT) == source.count(LAST) == 2:
        raise ValueError("not the seed's two consumer loops (K, V and last-V waits not found)")
    return source.replace(V_WAIT, "\n").replace(K_WAIT, K_WAIT + V_PREV).replace(LAST, V_LAST)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    Path(sys.argv[1]).write_text(hoisted(SEED.read_text()))
