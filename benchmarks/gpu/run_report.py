"""What a run learned: the "what has paid off" table of its variation kinds and, per
shape class, the best ratio to the baseline any candidate measured and what it changed.

    python benchmarks/gpu/run_report.py RUN_DIR

The per-class tables are the answer to "why no improvement": class by class of the
seed, how far the best setting found got beside the seed's and beside the spread of
candidates that ran the seed's own settings there; then the best setting by its mean over
repeated runs, and what its gain on the class adds to the suite's geomean: the most that
putting every class's steady best together could give (evolve/operators/payoff.py,
evolve/operators/shape_classes.py). Reads the run; writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from evolve.operators.config_edit import read_config  # noqa: E402
from evolve.operators.payoff import what_paid_off  # noqa: E402
from evolve.operators.offline import structure_key  # noqa: E402
from evolve.operators.shape_classes import (  # noqa: E402
    STEADY_N,
    Measured,
    render_class_table,
    render_steady_table,
)
from evolve.run import RunDirError, RunHandle  # noqa: E402


_HEAD = """best ratio per class of the seed (geomean over the shapes the seed puts there; seed
settings: how many candidates ran the seed's code and settings there, and the range
they measured - a best inside it is noise; + code: the source changed too)
"""

_STEADY = f"""steady best per class: the settings with the best mean ratio among those
run {STEADY_N}+ times with the seed's code, beside the mean of the seed's own (seed);
suite: what that gain on the class adds to the geomean over all the seed's shapes
"""


def report(run_dir: Path) -> str:
    run = RunHandle.open(run_dir)
    cands = run.store.candidates()
    seed = next((c.id for c in cands if c.parent_id is None), 0)
    code = structure_key(run.repo.source_at(seed))
    entries = []
    for c in cands:
        if c.ok and c.evaluation is not None:
            source = run.repo.source_at(c.id)
            entries.append(Measured(c.id, read_config(source), c.evaluation,
                                    structure_key(source) == code))
    return (what_paid_off(cands) or "no variation measured yet") + "\n\n" + _HEAD + \
        render_class_table(entries, seed) + "\n\n" + _STEADY + render_steady_table(entries, seed)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    try:
        print(report(Path(sys.argv[1])))
    except RunDirError as exc:
        sys.exit(f"run_report.py: {exc}")
