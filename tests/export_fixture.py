"""A small run directory for the export tests, written through the real run API
(RunHandle / LineageStore / KernelRepo). The exported candidate (#2) is
tests/data/export_kernel.py and its result_json is a real evaluator result of that file
(smoke suite, CPU interpreter, tests/data/export_kernel_result.json). Ancestor scores
are fixture values. Candidate #4 is recorded as ok but returns fp32: the export's
re-verification must catch it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from evolve.config import RunConfig
from evolve.gitrepo import commit_message
from evolve.records import Candidate, Event
from evolve.run import RunHandle

DATA = Path(__file__).parent / "data"
KERNEL = (DATA / "export_kernel.py").read_text(encoding="utf-8")
RESULT = json.loads((DATA / "export_kernel_result.json").read_text(encoding="utf-8"))
HYPOTHESIS_2 = ('Bigger tiles: BLOCK_M = BLOCK_N = 64 halve the programs\n'
                'second line with """triple quotes""" and a backslash \\ in it')


def _variant(block: int) -> str:
    return KERNEL.replace('CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64,',
                          f'CONFIG = {{"BLOCK_M": {block}, "BLOCK_N": {block},')


def _broken() -> str:  # wrong output dtype: a contract failure at the first call
    return KERNEL.replace("    return o\n", "    return o.float()\n")


def make_export_run(runs_dir: Path, name: str = "gqa-export-fixture") -> Path:
    cfg = RunConfig(name=name, target="gqa", operator="offline", seed_file="tests/data/export_kernel.py",
                    suite="smoke", rng_seed=0)
    h = RunHandle.create(runs_dir, cfg, {"fixture": True})
    plan = [  # id, parent, operator, status, score, source, hypothesis, result
        (0, None, "seed", "ok", 0.021, _variant(16), "seed kernel", {}),
        (1, 0, "offline", "ok", 0.030, _variant(32), "BLOCK_M 16 -> 32", {}),
        (2, 1, "agent", "ok", RESULT["score"], KERNEL, HYPOTHESIS_2, RESULT),
        (3, 2, "agent", "rejected", None, _variant(128), "BLOCK 128 everywhere", {}),
        (4, 2, "agent", "ok", 0.020, _broken(), "return fp32 (recorded ok on purpose)",
         {**RESULT, "score": 0.020}),
    ]
    shas: dict[int, str] = {}
    depths: dict[int, int] = {}
    for cid, parent, op, status, score, src, hyp, result in plan:
        parents = [shas[parent]] if parent is not None else []
        sha = h.repo.commit_candidate(cid, src, parents,
                                      commit_message(cid, hyp, {"Candidate-Id": cid, "Operator": op}))
        shas[cid] = sha
        depth = 0 if parent is None else depths[parent] + 1
        depths[cid] = depth
        c = Candidate(id=cid, parent_id=parent, parent2_id=None, operator=op, commit_sha=sha,
                      source_sha256=hashlib.sha256(src.encode()).hexdigest(), status=status,
                      score=score, failure_class="mismatch" if status == "rejected" else None,
                      failure_message="max |out-ref| too large" if status == "rejected" else None,
                      hypothesis=hyp, suite="smoke", device="interpreter", depth=depth,
                      result_json=json.dumps(result))
        h.store.add_candidate(c)  # per-shape numbers live in result_json only
    h.repo.set_best(2)
    h.store.add_event(Event(kind="new_best", candidate_id=2, message="fixture"))
    h.store.set_run_status("finished")
    root = h.paths.root
    h.close()
    return root
