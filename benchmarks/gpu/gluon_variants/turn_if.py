"""The Gluon seed with the ping-pong handshake behind a runtime ``if pingpong != 0:``
instead of a predicate (issue 20). With ping-pong off (the seed's setting), the
predicated ``mbarrier.arrive(..., pred=False)`` of `_pass_turn` is still lowered as a
barrier of the whole warpgroup (``BAR.SYNC``) before a predicated arrive, twice per
iteration of the warp-specialised D=128 loop's two consumer warpgroups (SASS, sm_90a).
A branch skips both the barrier and the arrive. Not measured yet:

    python3 benchmarks/gpu/gluon_variants/turn_if.py /tmp/gqa_gluon_turn_if.py
    python3 benchmarks/compare.py seeds/gqa_gluon.py /tmp/gqa_gluon_turn_if.py --target gqa
"""

from __future__ import annotations

import sys
from pathlib import Path

SEED = Path(__file__).resolve().parents[3] / "seeds" / "gqa_gluon.py"
TAKE = "    mbarrier.wait(turn_bars.index(WG), k & 1, pred=pingpong != 0)\n"
PASS = "    mbarrier.arrive(turn_bars.index(1 - WG), count=1, pred=pingpong != 0)\n"
TAKE_IF = "    if pingpong != 0:\n        mbarrier.wait(turn_bars.index(WG), k & 1)\n"
PASS_IF = "    if pingpong != 0:\n        mbarrier.arrive(turn_bars.index(1 - WG), count=1)\n"


def turn_if(source: str) -> str:
    """`source` (the seed) with `_take_turn` and `_pass_turn` branching on ping-pong."""
    if source.count(TAKE) != 1 or source.count(PASS) != 1:
        raise ValueError("the seed's _take_turn / _pass_turn are not in the expected form")
    return source.replace(TAKE, TAKE_IF).replace(PASS, PASS_IF)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    Path(sys.argv[1]).write_text(turn_if(SEED.read_text()))
