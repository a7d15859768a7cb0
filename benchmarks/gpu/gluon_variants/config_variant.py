"""A copy of a kernel file with some of its literal ``CONFIG`` entries changed: the A/B of
knobs on a GPU without editing the seed (issue 20).

    python3 benchmarks/gpu/gluon_variants/config_variant.py seeds/gqa_gluon.py /tmp/pp.py \
        PINGPONG_D128_NC=1 PINGPONG_D128_C=1
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def with_config(source: str, changes: dict[str, int]) -> str:
    """`source` with each ``"KEY": value,`` line of its CONFIG set to the new value."""
    for key, value in changes.items():
        pattern = re.compile(rf'^(\s*"{re.escape(key)}":\s*)[^,\n]+,', re.M)
        source, n = pattern.subn(rf"\g<1>{value},", source, count=1)
        if n != 1:
            raise KeyError(f"CONFIG has no literal entry {key!r}")
    return source


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pairs = dict(arg.split("=", 1) for arg in sys.argv[3:])
    Path(sys.argv[2]).write_text(with_config(Path(sys.argv[1]).read_text(),
                                             {k: int(v) for k, v in pairs.items()}))
