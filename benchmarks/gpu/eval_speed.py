"""How long one evaluation of a new candidate takes on this GPU (issue 9's <= 30 s / <= 8 s).

    python benchmarks/gpu/eval_speed.py KERNEL.py [KERNEL.py ...] --json OUT.json

For each kernel, in the order a run sees them: ``default`` with cuDNN timed in the worker
(a run's first evaluation), ``default`` again with those baselines handed in (every later
evaluation: the loop caches baselines per GPU), then ``quick`` with cached baselines (the
pre-screen), and that quick evaluation once more with a pre-started worker whose imports
finished beforehand (what a run's workers do, evaluator/prestart.py; skipped where the
sandbox has no pid namespace). Every evaluation has its own empty Triton cache, so each
compiles from scratch. Prints wall seconds and the worker's stage log per evaluation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from evaluator import EvalOptions, evaluate  # noqa: E402


def _stages(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.is_file() else ""
    return re.findall(r"(?:stage: \S+ t=\S+|precompile: .*|correctness: .*)", text)


def _spare():
    """A pre-started worker whose imports are done (None where pre-starting is refused)."""
    import time

    from evaluator import gpu_available
    from evaluator.prestart import Prestarted, PrestartUnsupported

    try:
        h = Prestarted.start(None, not gpu_available())
    except PrestartUnsupported as exc:
        print(f"  (no pre-started row: {exc})", flush=True)
        return None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and h.alive():
        if h.log_path.is_file() and "stage: init" in h.log_path.read_text(errors="replace"):
            break
        time.sleep(0.1)
    time.sleep(5)  # the imports after `stage: init` (a run overlaps them with the last evaluation)
    return h


def one(path: Path, suite: str, tmp: Path, tag: str, cached=None, spare=None) -> dict:
    log = tmp / f"{path.stem}-{tag}.log"
    res = evaluate(path, "gqa", suite, EvalOptions(baselines=("cudnn",), baseline_ms=cached,
                                                   log_path=log, prestarted=spare))
    row = {"kernel": str(path), "run": tag, "suite": suite, "status": res.status,
           "score": res.score, "wall_s": round(res.wall_s, 2),
           "baselines_cached": res.baselines_cached, "stages": _stages(log)}
    print(f"  {path.name:24s} {tag:16s} {res.status:9s} score {res.score or 0:.4f} "
          f"wall {res.wall_s:6.1f} s", flush=True)
    return row | {"_cached": {s.name: dict(s.baselines) for s in res.shapes}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernels", nargs="+", type=Path)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for path in args.kernels:
            first = one(path, "default", tmp, "default-cudnn")
            again = one(path, "default", tmp, "default-cached", first["_cached"])
            q0 = one(path, "quick", tmp, "quick-cudnn")
            q1 = one(path, "quick", tmp, "quick-cached", q0["_cached"])
            rows += [first, again, q0, q1]
            spare = _spare()
            if spare is not None:
                rows.append(one(path, "quick", tmp, "quick-cached-pre", q0["_cached"], spare))
    for r in rows:
        r.pop("_cached")
    Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
