"""A copy of a kernel file with some of its literal ``CONFIG`` entries changed: the A/B of
knobs on a GPU without editing the seed (issue 20). ``CLASS.KNOB=VALUE`` sets a knob of
one shape class of a per-class CONFIG, ``KNOB=VALUE`` a knob of a flat one (VALUE is a
Python literal); the rest of the file is untouched (evolve's own CONFIG editor).

    python3 benchmarks/gpu/gluon_variants/config_variant.py seeds/gqa_gluon.py /tmp/pp.py \
        D128_NC.PINGPONG=1 D128_C.PINGPONG=1
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from evolve.operators.config_edit import ConfigEditError, rewrite_config  # noqa: E402


def with_config(source: str, changes: list[str]) -> str:
    """`source` with each ``[CLASS.]KNOB=VALUE`` of `changes` written into its CONFIG."""
    updates = {}
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep:
            raise ValueError(f"not KNOB=VALUE or CLASS.KNOB=VALUE: {change!r}")
        cls, dot, knob = key.rpartition(".")
        updates[(cls, knob) if dot else knob] = ast.literal_eval(value)
    return rewrite_config(source, updates)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        Path(sys.argv[2]).write_text(with_config(Path(sys.argv[1]).read_text(), sys.argv[3:]))
    except (ConfigEditError, OSError, SyntaxError, ValueError) as exc:
        sys.exit(f"config_variant.py: {exc}")
