"""Running the evaluator for the loop: scratch dirs, per-candidate logs, rematches.

The orchestrator never imports candidate code: it writes the source to a file and
hands the path to `evaluator.evaluate()`, which runs it in an isolated worker.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.run import RunHandle


@dataclass
class RematchOutcome:
    better: bool
    data: dict[str, Any]


class Evaluations:
    """Evaluates sources on behalf of one run (candidates, operator probes, rematches)."""

    def __init__(self, run: RunHandle):
        self.run = run
        self._probe_counter = itertools.count()

    def _options(self, scratch: Path, log: Path | None, **kw: Any):  # -> EvalOptions
        from evaluator import EvalOptions
        return EvalOptions(scratch_dir=scratch, log_path=log,
                           baselines=tuple(self.run.config.baselines) or None,
                           timeout_s=self.run.config.eval_timeout_s, **kw)

    def _fresh_scratch(self, name: str) -> Path:
        """scratch/<name>, or scratch/<name>.retry<k> when a killed evaluation left it behind."""
        base = self.run.paths.scratch / name
        path, k = base, 1
        while path.exists():
            path = base.with_name(f"{name}.retry{k}")
            k += 1
        return path

    def _run(self, source: str, name: str, log: Path | None, suite: str | None):
        from evaluator import evaluate
        scratch = self._fresh_scratch(name)
        src_dir = self.run.paths.scratch / f"{scratch.name}.src"
        shutil.rmtree(src_dir, ignore_errors=True)
        src_dir.mkdir(parents=True)
        path = src_dir / "kernel.py"
        path.write_text(source, encoding="utf-8")
        try:
            return evaluate(path, target=self.run.config.target,
                            suite=suite or self.run.config.suite,
                            options=self._options(scratch, log))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(src_dir, ignore_errors=True)

    def candidate(self, cid: int, source: str):  # -> EvalResult
        log = self.run.paths.eval_log(cid)
        if log.exists():  # an earlier attempt (killed, or retried): keep it aside
            log.replace(log.with_suffix(f".earlier-{uuid.uuid4().hex[:6]}.log"))
        return self._run(source, str(cid), log, None)

    def probe(self, source: str, suite: str):  # -> EvalResult
        """An operator-requested evaluation (the agent's evaluate tool)."""
        n = next(self._probe_counter)
        name = f"probe-{uuid.uuid4().hex[:8]}-{n}"
        return self._run(source, name, self.run.paths.logs / f"{name}.log", suite)

    def rematch(self, challenger_cid: int, champion_cid: int) -> RematchOutcome:
        """Interleaved re-measurement of the challenger against the champion (GPU only)."""
        from evaluator import compare_candidates
        name = f"rematch-{challenger_cid}-vs-{champion_cid}"
        scratch = self._fresh_scratch(name)
        src_dir = self.run.paths.scratch / f"{scratch.name}.src"
        src_dir.mkdir(parents=True, exist_ok=True)
        chal, champ = src_dir / "challenger.py", src_dir / "champion.py"
        chal.write_text(self.run.repo.source_at(challenger_cid), encoding="utf-8")
        champ.write_text(self.run.repo.source_at(champion_cid), encoding="utf-8")
        try:
            res = compare_candidates(chal, champ, self.run.config.target, self.run.config.suite,
                                     self._options(scratch, self.run.paths.logs / f"{name}.log"),
                                     rounds=self.run.config.rematch_rounds)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(src_dir, ignore_errors=True)
        data = res.to_dict() if hasattr(res, "to_dict") else {
            k: getattr(res, k, None) for k in ("challenger_score", "champion_score", "ratio",
                                               "noise", "better", "per_round")}
        data.update(challenger=challenger_cid, champion=champion_cid)
        better = bool(res.better) and not getattr(res, "failure", None)
        return RematchOutcome(better=better, data=data)
