"""Read what an export needs from a run directory (read-only): the candidate, its source,
its lineage and the numbers the evaluator recorded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator import get_target
from evaluator.targets import UnknownTarget
from evolve.export_meta import Ancestor, Envelope, ExportMeta, ShapeNumbers
from evolve.gitrepo import KernelRepo, RepoError
from evolve.records import Candidate
from evolve.run import RunDirError, resolve_run
from evolve.store import LineageStore, StoreError

BENCH_SUITES = ("quick", "default")


class ExportError(Exception):
    """The export cannot proceed. `code` is the CLI exit status: 2 for bad input (no such
    run or candidate, rejected candidate, bad --out), 1 when the export itself failed."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


@dataclass
class Loaded:
    meta: ExportMeta
    source: str
    candidate: Candidate


def _lineage(store: LineageStore, cand: Candidate) -> list[Ancestor]:
    chain: list[Ancestor] = []
    seen: set[int] = set()
    cur: Candidate | None = cand
    while cur is not None and cur.id not in seen:
        seen.add(cur.id)
        chain.append(Ancestor(cur.id, cur.operator, cur.score, cur.hypothesis or ""))
        cur = store.get_candidate(cur.parent_id) if cur.parent_id is not None else None
    return chain


def _shapes(store: LineageStore, cand: Candidate, result: dict[str, Any]) -> list[ShapeNumbers]:
    if result.get("shapes"):
        return [ShapeNumbers.from_dict(s) for s in result["shapes"]]
    out = []
    for m in store.measurements(cand.id):
        d = m.to_row()
        d["name"] = d.pop("shape")
        d["causal"] = bool(d["causal"])
        out.append(ShapeNumbers.from_dict(d))
    return out


def envelope_for(target: str, result: dict[str, Any], verify_device: str) -> Envelope:
    """What the stored evaluation checked, plus what the export's own re-verification on
    `verify_device` ("cuda" | "interpreter") checks: a module only survives the export if
    that re-verification passes, so its envelope may claim both."""
    try:
        tgt = get_target(target)
    except UnknownTarget as exc:
        raise ExportError(str(exc.args[0])) from None
    env = Envelope(modes={})
    stored = "cuda" if result.get("device") == "cuda" else "interpreter"
    for mode in {stored, verify_device}:
        val = tgt.validation_shapes("cuda" if mode == "cuda" else "cpu")
        env.add(mode, {s.dtype for s in val}, {s.D for s in val})
    shapes = result.get("shapes") or []
    if shapes:
        env.add(stored, {s["dtype"] for s in shapes}, {s["D"] for s in shapes})
    return env


def bench_shapes(target: str) -> dict[str, list[dict[str, Any]]]:
    tgt = get_target(target)
    return {name: [{"B": s.B, "Hq": s.Hq, "Hkv": s.Hkv, "S": s.S, "D": s.D, "causal": s.causal}
                   for s in tgt.suite(name)]
            for name in BENCH_SUITES if name in tgt.suites}


def load_candidate(run: str | Path, runs_dir: Path, candidate_id: int | None,
                   verify_device: str) -> Loaded:
    try:
        paths = resolve_run(run, runs_dir)
        store = LineageStore.open(paths.db)
    except (RunDirError, StoreError) as exc:
        raise ExportError(str(exc)) from None
    try:
        run_rec = store.run()
        if candidate_id is None:
            cand = store.best()
            if cand is None:
                raise ExportError(f"run {paths.name} has no successful candidate to export")
        else:
            cand = store.get_candidate(candidate_id)
            if cand is None:
                raise ExportError(f"run {paths.name} has no candidate {candidate_id}")
        if not cand.ok:
            raise ExportError(f"candidate {cand.id} was rejected ({cand.failure_class}: "
                              f"{cand.failure_message}); only accepted candidates can be exported")
        try:
            repo = KernelRepo.open(paths.kernels)
            try:
                source = repo.source_at(cand.commit_sha or cand.id)
            finally:
                repo.repo.close()
        except RepoError as exc:
            raise ExportError(f"kernel source of candidate {cand.id}: {exc}") from None
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        if cand.source_sha256 and digest != cand.source_sha256:
            raise ExportError(f"candidate {cand.id}: the source in git does not match the "
                              "recorded sha256 (run directory damaged?)")
        result = cand.result
        meta = ExportMeta(
            run=paths.name, candidate_id=cand.id, target=run_rec.target, depth=cand.depth,
            score=cand.score, suite=result.get("suite") or cand.suite,
            device=result.get("device") or cand.device, timing=result.get("timing", ""),
            primary_baseline=result.get("primary_baseline"), commit_sha=cand.commit_sha,
            lineage=_lineage(store, cand), shapes=_shapes(store, cand, result),
            env=dict(result.get("env") or {}),
            envelope=envelope_for(run_rec.target, result, verify_device),
            bench_shapes=bench_shapes(run_rec.target), validation=dict(result.get("validation") or {}),
            measured_at=cand.created_at,
        )
        return Loaded(meta, source, cand)
    finally:
        store.close()
