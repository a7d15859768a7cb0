"""Per-class config sweep of a knob-driven seed (``seeds/gqa.py``) on this GPU, one process.

    python benchmarks/gpu/seed_tune.py sweep --classes D128_NC,D64_NC --json OUT.json
    python benchmarks/gpu/seed_tune.py merge A.json B.json --seed seeds/gqa.py --write NEW.py

``sweep``: for each class ``D<64|128>_<NC|C>`` it times SDPA-cuDNN and a small factorial
grid of the seed's ``CONFIG`` knobs on the class's ``default``-suite shapes (Hq=32 only
unless ``--all-shapes``), with the evaluator's timing protocol and correctness check
(benchmarks/compare.py), and records the geometric-mean ratio to cuDNN of every config.
``merge``: takes the best config of each class whose checks all passed and writes a copy
of the seed with those values in its ``CONFIG`` (``SEARCH_SPACE`` is left alone). The
result still has to pass ``evolve eval`` (validation shapes) before it is trusted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_util as bu  # noqa: E402
from evaluator import geomean  # noqa: E402
from evolve.operators.config_edit import ConfigEditError, read_config, rewrite_config  # noqa: E402
from evolve.operators.shape_classes import is_classed  # noqa: E402

# knob grids per class; every combination is timed (the rest of CONFIG stays as in the seed).
# For a seed with a SHORT_S and "<knob>_<class>_S" tile knobs for shorter sequences, a class
# ending in _S sweeps those on the short shapes and a plain class covers only the long ones.
# These are session 10's grids, run on such a seed (results/2026-11-26-h100-session10/
# gqa_before.py.txt); seeds/gqa.py has no _S knobs since they bought nothing on the H100.
# Earlier grids (sessions 7-8: HOST_DESC, FLAT, PERSIST, ...; session 9: lazy rescaling and
# exp2 emulation knobs, results/2026-11-26-h100-session9/gqa_swept.py.txt) are in git history.
GRIDS: dict[str, list[dict[str, list[int]]]] = {
    "D128_NC_S": [{"BLOCK_M": [128], "BLOCK_N": [64, 128], "WARPS": [4, 8], "STAGES": [2]},
                  {"BLOCK_M": [128], "BLOCK_N": [64], "WARPS": [4], "STAGES": [3]},
                  {"BLOCK_M": [64], "BLOCK_N": [64, 128], "WARPS": [4], "STAGES": [2, 3]}],
    "D128_C_S": [{"BLOCK_M": [128], "BLOCK_N": [32, 64], "WARPS": [4, 8], "STAGES": [2]},
                 {"BLOCK_M": [128], "BLOCK_N": [64], "WARPS": [4], "STAGES": [3]},
                 {"BLOCK_M": [64], "BLOCK_N": [32, 64], "WARPS": [4], "STAGES": [2, 3]}],
    "D128_NC": [{"BLOCK_N": [64, 128], "WARPS": [4, 8], "STAGES": [2, 3]}],
    "D128_C": [{"BLOCK_M": [64, 128], "WARPS": [4, 8], "STAGES": [2, 3]}],
    "D64_NC_S": [{"BLOCK_M": [64, 128], "WARPS": [4, 8], "STAGES": [3, 4]},
                 {"BLOCK_M": [64], "BLOCK_N": [32], "WARPS": [4], "STAGES": [3, 4]}],
    "D64_NC": [{"BLOCK_M": [64, 128], "WARPS": [4, 8], "STAGES": [3, 4]}],
    "D64_C_S": [{"BLOCK_M": [64, 128], "WARPS": [4, 8], "STAGES": [3, 4]},
                {"BLOCK_M": [64], "BLOCK_N": [32], "WARPS": [4], "STAGES": [3, 4]}],
    "D64_C": [{"BLOCK_M": [64, 128], "WARPS": [4, 8], "STAGES": [3, 4]}],
}


def class_of(shape, short_s: int = 0) -> str:
    """The sweep class of a shape: D<64|128>_<NC|C>, plus _S when S < short_s."""
    base = ("D64" if shape.D <= 64 else "D128") + ("_C" if shape.causal else "_NC")
    return base + "_S" if shape.S < short_s else base


def configs(cls: str) -> list[dict[str, int]]:
    """The grid's knob settings of a class ({knob: value}, knob names without the class)."""
    out = []
    for grid in GRIDS[cls]:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            cfg = dict(zip(keys, values))
            if cfg not in out:
                out.append(cfg)
    return out


def with_settings(base: dict, cls: str, cfg: dict) -> dict:
    """The seed's CONFIG with a class's knobs set: a per-class CONFIG ({class: {knob}},
    evolve/operators/shape_classes.py) or a flat one with "<knob>_<class>" keys."""
    if is_classed(base):
        new = {c: dict(v) for c, v in base.items()}
        new[cls].update(cfg)
        return new
    return base | {f"{k}_{cls}": v for k, v in cfg.items()}


def sweep(args) -> int:
    import torch
    from compare import Comparison

    classes = [c for c in args.classes.split(",") if c]
    bad = [c for c in classes if c not in GRIDS]
    if bad:
        print(f"error: unknown class(es) {bad}; known {list(GRIDS)}", file=sys.stderr)
        return 2
    mod = bu.load_kernel(args.seed, "seed")
    short_s = int(getattr(mod, "SHORT_S", 0))
    cmp = Comparison(args.target, "default", ["cudnn"])
    cmp.shapes = [s for s in cmp.shapes if class_of(s, short_s) in classes
                  and (args.all_shapes or s.Hq == 32)]
    gpu = torch.cuda.get_device_name()
    print(f"== sweep {classes} on {gpu}: {len(cmp.shapes)} shapes", flush=True)
    cmp.run_peers()
    cudnn = cmp.ms[bu.PEER_NAMES["cudnn"]]
    base = dict(mod.CONFIG)
    results = []
    t0 = time.time()
    import triton

    def save():  # after every config, so a timeout keeps what was measured
        Path(args.json).write_text(json.dumps({
            "gpu": gpu, "torch": torch.__version__, "triton": triton.__version__,
            "seed": str(args.seed), "shapes": [s.name for s in cmp.shapes], "cudnn_ms": cudnn,
            "results": results, "wall_s": time.time() - t0}, indent=1))

    for cls in classes:
        shapes = [s for s in cmp.shapes if class_of(s, short_s) == cls]
        for cfg in configs(cls):
            mod.CONFIG.clear()
            mod.CONFIG.update(with_settings(base, cls, cfg))
            row = {"class": cls, "config": cfg, "ms": {}, "ok": True, "error": None}
            for s in shapes:
                try:
                    chk = cmp.check(mod.attention, s)
                    row["ok"] &= bool(chk["ok"])
                    row["ms"][s.name] = cmp._time(mod.attention, s)
                except Exception as exc:  # noqa: BLE001 - a config may not compile
                    row["ok"] = False
                    row["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
                    break
            ratios = [cudnn[n] / m for n, m in row["ms"].items() if m and cudnn.get(n)]
            row["ratio"] = geomean(ratios) if row["ok"] and len(ratios) == len(shapes) else None
            row["is_seed"] = with_settings(base, cls, cfg) == base
            results.append(row)
            print(f"  {cls:8s} {json.dumps(cfg):90s} {bu.fmt(row['ratio'], '.4f')}"
                  f"{'  (seed)' if row['is_seed'] else ''}{'' if row['ok'] else '  FAILED ' + str(row['error'])}",
                  flush=True)
            save()
    mod.CONFIG.clear()
    mod.CONFIG.update(base)
    save()
    return 0


def merge(args) -> int:
    best: dict[str, dict] = {}
    seed_rows: dict[str, dict] = {}
    for path in args.files:
        for row in json.loads(Path(path).read_text())["results"]:
            if row["is_seed"]:
                seed_rows[row["class"]] = row
            if row["ratio"] is None:
                continue
            cur = best.get(row["class"])
            if cur is None or row["ratio"] > cur["ratio"]:
                best[row["class"]] = row
    text = Path(args.seed).read_text()
    classed = is_classed(read_config(text))
    for cls, row in sorted(best.items()):
        was = seed_rows.get(cls, {}).get("ratio")
        gain = row["ratio"] / was if was else None
        keep = gain is not None and gain < 1.0 + args.min_gain
        print(f"{cls:8s} best {row['ratio']:.4f} vs seed {bu.fmt(was, '.4f')} "
              f"(x{bu.fmt(gain, '.3f')}) {'kept seed config' if keep else json.dumps(row['config'])}")
        if keep:
            continue
        updates = {((cls, k) if classed else f"{k}_{cls}"): v for k, v in row["config"].items()}
        try:
            text = rewrite_config(text, updates)
        except ConfigEditError as exc:
            print(f"error: {args.seed}: {exc}", file=sys.stderr)
            return 1
    Path(args.write).write_text(text)
    print(f"wrote {args.write}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sw = sub.add_parser("sweep")
    sw.add_argument("--classes", required=True)
    sw.add_argument("--json", required=True)
    sw.add_argument("--seed", default=str(bu.REPO / "seeds" / "gqa.py"))
    sw.add_argument("--target", default="gqa")
    sw.add_argument("--all-shapes", action="store_true")
    mg = sub.add_parser("merge")
    mg.add_argument("files", nargs="+")
    mg.add_argument("--seed", default=str(bu.REPO / "seeds" / "gqa.py"))
    mg.add_argument("--write", required=True)
    mg.add_argument("--min-gain", type=float, default=0.01,
                    help="keep the seed's config unless the best beats it by this fraction")
    args = ap.parse_args(argv)
    return sweep(args) if args.cmd == "sweep" else merge(args)


if __name__ == "__main__":
    sys.exit(main())
