"""`evolve export`: turn an accepted candidate into a standalone module (torch + triton
only), then re-verify the written file through the evaluator in a fresh process.

load (read-only: the candidate, its source from git, its lineage, its stored EvalResult)
-> render (the template evolve/templates/export_module.py.tmpl around the candidate's
source, entry point renamed) -> write -> verify. The module is trusted output of an
already-checked candidate, so the re-verification skips only the evaluator's static
check (the wrapper legitimately uses SDPA for its fallback and torch.library for the
custom op); the runtime guard, the validation shapes and the trusted checker all apply.
"""

from __future__ import annotations

import ast
import pprint
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Callable

from evaluator import (EvalOptions, EvalResult, Target, TargetError, UnknownTarget, UsageError,
                       evaluate, get_target, gpu_available)
from evolve.export_meta import Envelope, ExportMeta, envelope_text
from evolve.export_rename import RenameError, bound_names, rename_entrypoint, split_future_imports
from evolve.read import RunNotReady, candidate_source
from evolve.records import Candidate, sha256_text
from evolve.run import RunDirError, resolve_run
from evolve.store import LineageStore, StoreError

BENCH_SUITES = ("quick", "default")
# by the target's EXPORT_WRAPPER: "prefill" (gqa, mha: input checks, SDPA fallback, custom
# op, --selftest/--bench) or "plain" (any other target: the contract's function, no fallback)
TEMPLATES = {"prefill": "export_module.py.tmpl", "plain": "export_plain.py.tmpl"}


class ExportError(Exception):
    """The export cannot start: no such run or candidate, a rejected candidate, a bad
    --out (the CLI exits 2)."""


class ExportFailed(ExportError):
    """The export itself failed: the source cannot be embedded, or re-verification was
    impossible (the CLI exits 1)."""


class VerificationFailed(ExportFailed):
    """The written module failed the evaluator's re-verification (the file was removed)."""

    def __init__(self, message: str, result: EvalResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ExportReport:
    out: Path
    meta: ExportMeta
    verification: EvalResult


# ----------------------------------------------------------------------------- load

def _lineage(store: LineageStore, cand: Candidate) -> list[Candidate]:
    """The candidate, its parent, ..., the seed (a parent's id is always below its child's)."""
    chain = [cand]
    while chain[-1].parent_id is not None and (parent := store.get_candidate(chain[-1].parent_id)):
        chain.append(parent)
    return chain


def envelope_for(tgt: Target, result: EvalResult, verify_device: str) -> Envelope:
    """What the stored evaluation checked, plus what the export's own re-verification on
    `verify_device` ("cuda" | "interpreter") checks: a module only survives the export if
    that re-verification passes, so its envelope may claim both."""
    stored = "cuda" if result.device == "cuda" else "interpreter"
    shapes = {mode: list(tgt.validation_shapes("cuda" if mode == "cuda" else "cpu"))
              for mode in {stored, verify_device}}
    shapes[stored] += result.shapes
    return {mode: {"dtypes": sorted({s.dtype for s in checked}),
                   "head_dims": sorted({int(s.D) for s in checked if getattr(s, "D", None)})}
            for mode, checked in shapes.items()}


def load_candidate(run: str | Path, runs_dir: Path, candidate_id: int | None,
                   verify_device: str) -> ExportMeta:
    """The candidate (default: the run's champion) and all the export needs, read-only."""
    try:
        paths = resolve_run(run, runs_dir)
        store = LineageStore.open(paths.db)
    except (RunDirError, StoreError) as exc:
        raise ExportError(str(exc)) from None
    try:
        target = store.run().target
        cand = store.best() if candidate_id is None else store.get_candidate(candidate_id)
        if cand is None:
            raise ExportError(f"run {paths.name} has no successful candidate to export"
                              if candidate_id is None else
                              f"run {paths.name} has no candidate {candidate_id}")
        if not cand.ok:
            raise ExportError(f"candidate {cand.id} was rejected ({cand.failure_class}: "
                              f"{cand.failure_message}); only accepted candidates can be exported")
        result = cand.evaluation
        if result is None:
            raise ExportError(f"candidate {cand.id} has no stored evaluation result")
        try:
            source = candidate_source(paths.root, cand.commit_sha, cand.id)
        except RunNotReady as exc:
            raise ExportError(str(exc)) from None
        if cand.source_sha256 and sha256_text(source) != cand.source_sha256:
            raise ExportError(f"candidate {cand.id}: the source in git does not match the "
                              "recorded sha256 (run directory damaged?)")
        try:
            tgt = get_target(target)
            envelope = envelope_for(tgt, result, verify_device)
        except UnknownTarget as exc:
            raise ExportError(str(exc.args[0])) from None
        except TargetError as exc:
            raise ExportError(str(exc)) from None
        wrapper = tgt.export_wrapper
        bench = {}
        if wrapper == "prefill":
            bench = {name: [{"B": s.B, "Hq": s.Hq, "Hkv": s.Hkv, "S": s.S, "D": s.D, "causal": s.causal}
                            for s in tgt.suite(name)]
                     for name in BENCH_SUITES if name in tgt.suites}
        return ExportMeta(run=paths.name, target=target, candidate=cand, source=source,
                          result=result, lineage=_lineage(store, cand), envelope=envelope,
                          bench_shapes=bench, wrapper=wrapper, contract=tgt.contract,
                          target_name=tgt.name)
    finally:
        store.close()


# ----------------------------------------------------------------------------- render

def _fill(meta: ExportMeta, kernel_source: str, kernel_name: str, future: list[str]) -> str:
    fmt = lambda obj: pprint.pformat(obj, width=100, sort_dicts=False)  # noqa: E731
    doc = meta.docstring_text().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    suite = meta.result.suite
    template = (resources.files("evolve") / "templates" / TEMPLATES[meta.wrapper]).read_text(
        encoding="utf-8")
    return Template(template).substitute(
        target_name=repr(meta.target_name), contract=repr(meta.contract),
        docstring=f'"""{doc}\n"""',
        future_imports="".join(f"from __future__ import {name}\n" for name in future),
        provenance=fmt(meta.provenance()),
        envelope=fmt(meta.envelope),
        envelope_text=envelope_text(meta.envelope),
        envelope_text_repr=repr(envelope_text(meta.envelope)),
        bench_shapes=fmt(meta.bench_shapes),
        bench_default=repr(suite if suite in meta.bench_shapes
                           else ("quick" if "quick" in meta.bench_shapes else "all")),
        run=meta.run,
        candidate_id=str(meta.candidate.id),
        kernel_name=kernel_name,
        kernel_source=kernel_source.rstrip("\n") + "\n",
        op_name=repr(meta.op_name()),
        op_name_plain=meta.op_name(),
    )


def render_module(meta: ExportMeta) -> str:
    """The text of the exported module: candidate source verbatim (entry point renamed,
    `from __future__` lines moved to the top) between a provenance header and a wrapper."""
    renamed, kernel_name = rename_entrypoint(meta.source)
    future, body = split_future_imports(renamed)
    wrapper_names = bound_names(ast.parse(_fill(meta, "pass\n", kernel_name, [])).body)
    clash = sorted(bound_names(ast.parse(body).body) & (wrapper_names - {kernel_name}))
    if clash:
        raise RenameError(f"candidate defines names the export wrapper needs: {', '.join(clash)}")
    text = _fill(meta, body, kernel_name, future)
    try:
        compile(text, "<exported module>", "exec")
    except SyntaxError as exc:
        raise RenameError(f"rendered module does not compile: {exc.msg} (line {exc.lineno})") from exc
    return text


# ----------------------------------------------------------------------------- write, verify

def write_module(meta: ExportMeta, out: Path, *, force: bool = False) -> Path:
    """Render and write the module (no verification). Refuses to overwrite unless `force`."""
    if out.suffix != ".py":
        raise ExportError(f"--out must name a .py file, got {out}")
    if not out.parent.is_dir():
        raise ExportError(f"directory {out.parent} does not exist")
    if out.exists() and not force:
        raise ExportError(f"{out} already exists (pass --force to overwrite it)")
    try:
        text = render_module(meta)
    except RenameError as exc:
        raise ExportFailed(f"cannot embed candidate {meta.candidate.id}: {exc}") from None
    out.write_text(text, encoding="utf-8")
    return out


def export_candidate(run: str | Path, out: Path, *, runs_dir: Path = Path("runs"),
                     candidate_id: int | None = None, suite: str | None = None,
                     force: bool = False, timeout_s: float = 600.0,
                     on_written: Callable[[Path, ExportMeta], None] | None = None) -> ExportReport:
    """Export one candidate (default: the run's champion) to `out` and re-verify it.

    On any failure after the file was written, that file (and nothing else) is removed
    and `ExportError` (no verification possible here) or `VerificationFailed` is raised."""
    out, gpu = Path(out), gpu_available()
    meta = load_candidate(run, runs_dir, candidate_id, "cuda" if gpu else "interpreter")
    write_module(meta, out, force=force)
    if on_written is not None:
        on_written(out, meta)
    # the module is evaluated like a candidate, static check skipped (see module doc)
    baselines = ("cudnn",) if gpu and meta.wrapper == "prefill" else None
    options = EvalOptions(timeout_s=timeout_s, static_check=False, baselines=baselines)
    try:
        result = evaluate(out, meta.target, suite or ("default" if gpu else "smoke"), options)
        if not result.ok:
            f = result.failure
            why = f"{f.cls}: {f.message}" + (f" [{f.shape}]" if f.shape else "") if f else "unknown failure"
            raise VerificationFailed(f"re-verification of {out} failed ({why}); the file was removed",
                                     result)
    except BaseException as exc:  # the written file goes, whatever stopped the verification
        out.unlink(missing_ok=True)
        if isinstance(exc, UsageError):
            raise ExportError(f"re-verification not possible: {exc}; the file was removed") from None
        raise
    return ExportReport(out=out, meta=meta, verification=result)
