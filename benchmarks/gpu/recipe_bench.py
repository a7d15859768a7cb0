"""Each source recipe of the offline operator, applied to a seed, against that seed and
cuDNN in ONE process on this GPU (the number knowledge/structural-recipes.md asks for).

    python benchmarks/gpu/recipe_bench.py --seed seeds/gqa.py [--suite default]
        [--recipes a,b] [--after c,d] [--rounds 2] --json OUT.json

For every recipe whose pattern is present in the seed (evolve/operators/recipes.py), the
child kernel is written next to the JSON (`recipe_kernels/`), checked on every shape
against the evaluator's reference with its error rule, and timed interleaved with the
seed and cuDNN (benchmarks/compare.py: the evaluator's timing protocol, median of
`--rounds` rotated rounds). Per recipe: geomean ratio to cuDNN, gain over the seed on the
shapes both timed, and a verdict: `kept` when every check passed and the gain is at
least --keep (default 1 %), else `dropped` (why). The JSON is rewritten after every
shape, so a timeout keeps what was measured. Exit codes: 0 done, 2 usage error / no GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_util as bu  # noqa: E402  (puts the repo root on sys.path)
from evaluator import geomean  # noqa: E402
from evolve.operators.recipes import RECIPES  # noqa: E402

SEED = "seed"


def children(seed_source: str, names: list[str] | None = None) -> dict[str, str]:
    """recipe name -> the seed with that recipe applied, for the recipes that apply."""
    out = {}
    for name in names or list(RECIPES):
        if name not in RECIPES:
            raise SystemExit(f"error: unknown recipe {name!r} (known: {', '.join(RECIPES)})")
        child = RECIPES[name].apply(seed_source)
        if child is not None:
            out[name] = child
    return out


def stacked(seed_source: str, names: list[str]) -> str:
    """The seed with each recipe of `names` applied in order (ValueError: one is unknown
    or its pattern is absent at that point)."""
    src = seed_source
    for name in names:
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
        out = RECIPES[name].apply(src)
        if out is None:
            raise ValueError(f"recipe {name!r} does not apply after {names[:names.index(name)]}")
        src = out
    return src


def verdicts(ms: dict[str, dict[str, float | None]], checks: dict[str, dict[str, dict]],
             cudnn: str, keep: float) -> dict[str, dict]:
    """Per recipe: vs cuDNN, gain over the seed on the shapes both timed, and the verdict."""
    seed = ms.get(SEED, {})
    base = ms.get(cudnn, {})
    out = {}
    for label, times in ms.items():
        if label in (SEED, cudnn):
            continue
        failed = [s for s, c in checks.get(label, {}).items() if not c.get("ok")]
        common = [s for s, t in times.items() if t and seed.get(s)]
        gain = geomean([seed[s] / times[s] for s in common])
        vs = geomean([base[s] / t for s, t in times.items() if t and base.get(s)])
        if failed:
            verdict = f"dropped: check failed on {len(failed)} shape(s)"
        elif not common or gain is None:
            verdict = "dropped: never timed"
        elif len(common) < len(seed):
            verdict = f"dropped: timed on {len(common)}/{len(seed)} shapes"
        elif gain >= 1 + keep:
            verdict = "kept"
        else:
            verdict = f"dropped: gain {gain:.3f} < {1 + keep:g}"
        out[label] = {"vs_cudnn": vs, "gain_vs_seed": gain, "shapes": len(common),
                      "failed_checks": failed, "verdict": verdict}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", default=str(bu.REPO / "seeds" / "gqa.py"))
    ap.add_argument("--target", default="gqa")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--recipes", default="", help="comma-separated names (default: all)")
    ap.add_argument("--after", default="",
                    help="comma-separated recipes applied to the seed first, in order: the "
                         "stacked kernel is the base every other recipe is measured against "
                         "(for a recipe whose pattern another recipe creates, e.g. host_tma_kv "
                         "after tma_load_kv)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", type=float, default=0.01,
                    help="a recipe is kept when it beats the seed by this fraction")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("error: recipe_bench needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton
    from compare import Comparison

    seed_path = Path(args.seed)
    folder = Path(args.json).parent / "recipe_kernels"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        base = stacked(seed_path.read_text(), [r for r in args.after.split(",") if r])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.after:
        seed_path = folder / f"{seed_path.stem}__{args.after.replace(',', '+')}.py"
        seed_path.write_text(base)
    kids = children(base, [r for r in args.recipes.split(",") if r] or None)
    kernels = [(SEED, seed_path)]
    for name, src in kids.items():
        path = folder / f"{seed_path.stem}__{name}.py"
        path.write_text(src)
        kernels.append((name, path))
    cmp = Comparison(args.target, args.suite, ["cudnn"])
    cudnn = bu.PEER_NAMES["cudnn"]
    shapes = list(cmp.shapes)
    gpu = torch.cuda.get_device_name()
    print(f"== recipes on {seed_path.name} ({gpu}): {', '.join(kids) or 'none apply'}; "
          f"{len(shapes)} shapes, {args.rounds} rounds", flush=True)
    t0 = time.time()

    def save() -> dict[str, dict]:
        result = verdicts(cmp.ms, cmp.checks, cudnn, args.keep)
        Path(args.json).write_text(json.dumps({
            "gpu": gpu, "torch": torch.__version__, "triton": triton.__version__,
            "seed": str(seed_path), "suite": args.suite, "rounds": args.rounds,
            "keep": args.keep, "recipes": result, "ms": cmp.ms, "checks": cmp.checks,
            "errors": cmp.errors, "wall_s": time.time() - t0}, indent=1, default=str))
        return result

    for shape in shapes:  # one shape at a time, so the JSON grows as we go
        cmp.shapes = [shape]
        cmp.run_interleaved(kernels, rounds=args.rounds)
        save()
    cmp.shapes = shapes
    result = save()
    seed_vs = geomean([cmp.ms[cudnn][s] / t for s, t in cmp.ms.get(SEED, {}).items()
                       if t and cmp.ms[cudnn].get(s)])
    rows = [[SEED, bu.fmt(seed_vs, ".3f"), "1.000", "-"]]
    rows += [[name, bu.fmt(r["vs_cudnn"], ".3f"), bu.fmt(r["gain_vs_seed"], ".3f"), r["verdict"]]
             for name, r in result.items()]
    print(bu.table(["recipe", "vs cuDNN", "vs seed", "verdict"], rows))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
