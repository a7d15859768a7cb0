"""The trusted checker process: spawned after the worker exited; never imports candidates.

Input: the parent's own copy of the plan (not the worker's) and the worker's output
directory; it loads the target from the plan's spec. It is started together with the worker (torch import overlaps) and answers
two commands on stdin: ``checks`` once the worker's correctness outputs exist (the
worker waits meanwhile, so a wrong kernel is never timed) and ``samples`` after the
worker has exited. It regenerates every input from the secret seed (timed calls'
through timed_inputs.py, as the worker built them), computes the target's
fp64/fp32 reference and PyTorch's same-dtype result, loads the worker's raw
outputs with ``torch.load(weights_only=True)`` (plain tensors only, no pickled code)
and applies the rule of correctness.py to every correctness check and to the sampled
rows of timed calls. Each verdict is printed as one JSON line on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from evaluator.correctness import classify_repeat, compare
from evaluator.failures import CandidateFailure
from evaluator.inputs import torch_dtype
from evaluator.targets.plugin import from_spec
from evaluator.timed_inputs import TimedInputs


class Checker:
    def __init__(self, plan: dict[str, Any], out_dir: Path, n_sides: int):
        self.plan = plan
        self.out_dir = out_dir
        self.n_sides = n_sides
        self.tdev = "cuda" if plan["device"] == "cuda" else "cpu"
        self.target = from_spec(plan["target"])
        self.checked = 0
        self.passed = 0
        self.max_ratio = 0.0
        # per side: {timed index (str): the worst error and error ratio of its re-checked samples}
        self.errors: list[dict[str, dict[str, float]]] = [{} for _ in range(n_sides)]

    def _load(self, name: str, shape: Any, expect: tuple[int, ...]):
        import torch

        path = self.out_dir / name
        if not path.is_file():
            raise CandidateFailure("forbidden", f"evaluator output {name} is missing (removed?)", shape.name)
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a forged/garbled file
            raise CandidateFailure("forbidden", f"evaluator output {name} unreadable: {exc}", shape.name)
        if type(t) is not torch.Tensor or tuple(t.shape) != expect or t.dtype != torch_dtype(shape.dtype):
            raise CandidateFailure("contract", f"output {name}: {type(t).__name__} "
                                   f"{tuple(getattr(t, 'shape', ()))}, expected {expect}", shape.name)
        return t.to(self.tdev)

    def run_checks(self) -> None:
        for chk in self.plan["checks"]:
            shape = self.target.shape(chk["shape"])
            call = self.target.make_inputs(shape, chk["seed"], chk["kind"], self.tdev)
            ref = self.target.reference(call, shape)
            low = self.target.lowp(call, shape)
            del call
            expect = tuple(shape.out_shape)
            where = f"{shape.name} [{chk['kind']}]"
            for side in range(self.n_sides):
                first = self._load(f"check{chk['id']}_s{side}_r0.pt", shape, expect)
                repeat = None  # (class, message) when the two calls differ
                if chk["repeat"]:
                    second = self._load(f"check{chk['id']}_s{side}_r1.pt", shape, expect)
                    repeat = classify_repeat(first, second)
                    if repeat and repeat[0] == "unwritten":  # judged before the error bound
                        raise CandidateFailure(*repeat, where)
                self.checked += 1
                st = compare(first, ref, low, shape.dtype, **self.target.tolerance)
                if not st.ok:
                    raise CandidateFailure(st.cls, f"{st.message} on {chk['kind']} inputs", where)
                if repeat:
                    raise CandidateFailure(*repeat, where)
                self.passed += 1
                self.max_ratio = max(self.max_ratio, st.ratio)

    def run_samples(self, report: dict[str, Any]) -> None:
        import torch

        by_idx = {t["idx"]: t for t in report.get("timing", [])}
        for entry in self.plan["timed"]:
            shape = self.target.shape(entry["shape"])
            rec = by_idx.get(entry["idx"])
            if rec is None or len(rec.get("sides", [])) != self.n_sides:
                raise CandidateFailure("forbidden", "timing record missing from the worker report", shape.name)
            for spec in entry["samples"]:
                rows = spec["rows"]
                with TimedInputs(self.target, shape, self.plan["seed"], self.plan["kinds"],
                                 entry["idx"], spec["pass"], self.tdev) as make:
                    call = make(spec["call"])  # shared inputs: rebuilt, plus the call's slices
                    ref = self.target.reference(call, shape, rows)
                    low = self.target.lowp(call, shape, rows)
                    del call
                expect = (*shape.out_shape[:2], len(rows), *shape.out_shape[3:])
                for side in range(self.n_sides):
                    name = f"time{entry['idx']}_s{side}_p{spec['pass']}_c{spec['call']}.pt"
                    out = self._load(name, shape, expect)
                    st = compare(out, ref, low, shape.dtype, **self.target.tolerance)
                    if not st.ok:
                        raise CandidateFailure(st.cls, f"re-check of a timed output: {st.message}",
                                               shape.name, side)
                    worst = self.errors[side].setdefault(str(entry["idx"]), {"error": 0.0, "error_ratio": 0.0})
                    worst["error"] = max(worst["error"], st.max_err)
                    worst["error_ratio"] = max(worst["error_ratio"], st.ratio)
                if self.tdev == "cuda":
                    torch.cuda.empty_cache()


def _answer(chk: Checker, cmd: str, out_dir: Path) -> dict[str, Any]:
    verdict: dict[str, Any] = {"failure": None}
    try:
        if cmd == "checks":
            chk.run_checks()
        elif cmd == "samples":
            try:
                report = json.loads((out_dir / "report.json").read_text())
            except (OSError, ValueError) as exc:
                raise CandidateFailure("forbidden", f"worker report unreadable: {exc}") from None
            if not isinstance(report, dict):
                raise CandidateFailure("forbidden", "worker report is not an object")
            chk.run_samples(report)
        else:
            raise ValueError(f"unknown checker command {cmd!r}")
    except CandidateFailure as f:
        verdict["failure"] = {"class": f.cls, "message": f.message, "shape": f.shape, "side": f.side}
    except Exception as exc:  # noqa: BLE001 - the checker's own error is an evaluator bug
        import traceback

        verdict["failure"] = {"class": "internal", "message": f"checker: {type(exc).__name__}: {exc}\n"
                              + traceback.format_exc(limit=6), "shape": None}
    verdict.update({"checked": chk.checked, "passed": chk.passed, "max_error_ratio": chk.max_ratio,
                    "shape_errors": chk.errors})
    return verdict


def main(argv: list[str] | None = None) -> None:
    """Command loop: one JSON command per stdin line (``checks``, ``samples``), one verdict line out."""
    argv = sys.argv[1:] if argv is None else argv
    req = json.loads(Path(argv[0]).read_text())
    out_dir = Path(req["out_dir"])
    import torch  # imported up front, while the worker is still busy

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if req["plan"].get("device") == "cuda":
        # create the CUDA context now, while the worker is busy (an allocation, no kernel:
        # nothing runs on the GPU beside the worker's baseline timing)
        torch.empty(1, device="cuda")
    chk = Checker(req["plan"], out_dir, int(req["n_sides"]))
    for line in sys.stdin:  # one command per line, written by the runner (spawn.CheckerSession)
        cmd = json.loads(line).get("cmd")
        verdict = _answer(chk, str(cmd), out_dir)
        sys.stdout.write("EVALUATOR-VERDICT " + json.dumps(verdict) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
