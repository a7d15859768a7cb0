"""One evaluation of a kernel on this GPU with the worker's stage log kept: where its
seconds go (the stage times and the correctness breakdown the worker prints).

    python benchmarks/gpu/eval_log.py KERNEL.py [SUITE] --out DIR

Writes DIR/eval_<kernel>_<suite>.log (the worker log) and prints the status, score, wall
seconds and the log's stage, precompile and correctness lines.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from evaluator import EvalOptions, evaluate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernel", type=Path)
    ap.add_argument("suite", nargs="?", default="default")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"eval_{args.kernel.stem}_{args.suite}.log"
    res = evaluate(args.kernel, "gqa", args.suite, EvalOptions(baselines=("cudnn",), log_path=log))
    print(f"{args.kernel} {args.suite}: {res.status} score {res.score} wall {res.wall_s:.1f} s")
    text = log.read_text(errors="replace") if log.is_file() else ""
    for line in re.findall(r".*(?:stage: \S+ t=\S+|precompile: |correctness: ).*", text):
        print("  " + line.strip()[:200])
    return 0 if res.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
