"""``evaluate()`` and ``compare_candidates()``: the parent side of an evaluation.

Parent steps: read the source; ``compile()`` (class ``syntax``); static check
(``forbidden``); without a GPU, a candidate that only runs on one (Gluon) stops here with
``needs_gpu``; scratch dir; plan with a secret seed (``secrets``); the worker in the
sandbox with a wall-clock timeout (process-group SIGKILL -> ``timeout``; the worker's GPU
part waits for the caller's ``acquire_gpu``, gate.py, not counted); a dead worker
(signal / no report) -> ``runtime``, or ``cuda_fault`` / ``oom`` when its log shows it;
then the trusted checker (spawned after the worker exited) decides correctness; the
result is assembled from validated numbers (assemble.py). The calling process never
imports candidate code and never initialises CUDA. ``EvalOptions`` lives in options.py,
stage announcements (``EvalOptions.on_stage``) in progress.py.
"""

from __future__ import annotations

import glob
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evaluator import assemble, ncu, profile_stage, sandbox, sass, spawn
from evaluator.baselines import resolve
from evaluator.failures import CandidateFailure, classify_text
from evaluator.noise import CompareResult, decide, geomean
from evaluator.options import EvalOptions, UsageError
from evaluator.plan import build_plan
from evaluator.profiling import NO_GPU, ProfileResult, compile_info_from, profile_from_report
from evaluator.progress import StageReporter
from evaluator.result import GPU_TIMING, NOT_GPU_TIMING, EvalResult
from evaluator.targets import TargetError, UnknownTarget, get_target

_GPU: bool | None = None
GpuGate = Callable[[], Callable[[], None]]  # acquire_gpu: blocks, returns the release


def gpu_available() -> bool:
    """Whether a CUDA GPU is usable; asks a subprocess once (no CUDA init here) and caches."""
    global _GPU
    if _GPU is None and not (glob.glob("/dev/nvidia*") or shutil.which("nvidia-smi")):
        _GPU = False  # no NVIDIA device nodes: no CUDA, no need to import torch anywhere
    if _GPU is None:
        try:
            r = subprocess.run([sys.executable, "-I", "-c", "import torch; print(torch.cuda.is_available())"],
                               capture_output=True, text=True, timeout=180, env=spawn.scrubbed_env())
            _GPU = r.stdout.strip().endswith("True")
        except (OSError, subprocess.TimeoutExpired):
            _GPU = False
    return _GPU


@dataclass
class _Prepared:
    target: Any
    suite: str
    device: str
    tdev: str
    sources: list[tuple[Path, str]]


def _prepare(paths: list[Path], target: str, suite: str | None) -> _Prepared:
    if not target:
        raise UsageError("no target given")
    try:
        tgt = get_target(target)
    except (UnknownTarget, TargetError) as exc:
        raise UsageError(str(exc)) from None
    sources = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise UsageError(f"candidate file not found: {p}")
        sources.append((p, p.read_text(encoding="utf-8", errors="replace")))
    gpu = gpu_available()
    suite = suite or ("default" if gpu else "smoke")
    if suite not in tgt.suites:
        raise UsageError(f"unknown suite {suite!r} for target {tgt.name} (known: {', '.join(tgt.suites)})")
    if suite != "smoke" and not gpu:
        raise UsageError(f"suite {suite!r} needs a CUDA GPU; use --suite smoke on the CPU interpreter")
    return _Prepared(tgt, suite, "cuda" if gpu else "interpreter", "cuda" if gpu else "cpu", sources)


# CPython 3.11's AST constructor is not thread-safe ("AST constructor recursion depth
# mismatch" when two threads parse at once); callers may evaluate from several threads.
_PARSE_LOCK = threading.Lock()


def _screen(prep: _Prepared, options: EvalOptions) -> CandidateFailure | None:
    """The parent's checks of each source before any process starts (syntax, static rules,
    ``needs_gpu``); the failure's ``side`` is the index of the source."""
    for side, (path, source) in enumerate(prep.sources):
        with _PARSE_LOCK:
            bad = _static(source, path, options.static_check) or _needs_gpu(source, prep.device)
        if bad:
            bad.side = side
            return bad
    return None


def _static(source: str, path: Path, enabled: bool) -> CandidateFailure | None:
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        return CandidateFailure("syntax", f"line {exc.lineno}: {exc.msg}")
    except ValueError as exc:  # null bytes
        return CandidateFailure("syntax", str(exc))
    if not enabled:
        return None
    from evaluator.static_check import check_source

    bad = check_source(source, path.name)
    if bad:
        return CandidateFailure("forbidden", "; ".join(map(str, bad[:8])))
    return None


def _needs_gpu(source: str, device: str) -> CandidateFailure | None:
    """``needs_gpu`` when `source` cannot run on the interpreter and there is no GPU here."""
    if device == "cuda":
        return None
    from evaluator.static_check import gpu_only_reason

    why = gpu_only_reason(source)
    if why is None:
        return None
    return CandidateFailure("needs_gpu", f"this candidate needs a CUDA GPU and this machine has none: "
                            f"{why}; evaluate it on a GPU machine (--suite quick or default)")


def _execute(prep: _Prepared, plan: dict[str, Any], options: EvalOptions,
             acquire_gpu: GpuGate | None = None) -> dict[str, Any]:
    """Run worker then checker. Returns a dict with report, verdict, failure, isolation, log.
    ``options.prestarted`` is used when it fits (prestart.py); the caller closes it anyway.
    The GPU taken through ``acquire_gpu`` at the worker's gate is given back when the
    worker and the checker are gone, whatever happened."""
    spare = options.prestarted
    if spare is not None and (options.scratch_dir is not None
                              or not spare.usable(options.gpu, prep.device != "cuda")):
        spare.close()  # dead, used, or started for another GPU / interpreter setting
        spare = None
    own_scratch = options.scratch_dir is None
    if spare is not None:  # its worker already runs in its scratch; its log is in private
        scratch, private = spare.scratch, spare.private
    else:
        scratch = Path(tempfile.mkdtemp(prefix="evolve-eval-")) if own_scratch else Path(options.scratch_dir)
        private = Path(tempfile.mkdtemp(prefix="evolve-check-"))
    log_path = private / "worker.log"
    out: dict[str, Any] = {"report": {}, "verdict": None, "failure": None, "isolation": "none", "log": ""}
    stage = StageReporter(options.on_stage)
    held: list[Callable[[], None]] = []  # the release of the GPU gate, once taken

    def take_gpu() -> None:
        if acquire_gpu is not None and not held:
            held.append(acquire_gpu())

    try:
        dirs = sandbox.make_scratch(scratch)
        cand_paths = [dirs["candidate"] / f"kernel_{i}.py" for i in range(len(prep.sources))]
        for dst, (_, src) in zip(cand_paths, prep.sources):
            dst.write_text(src, encoding="utf-8")
        token = secrets.token_hex(16)  # marks the worker's own phase1.json (a candidate may write files)
        request = {"plan": plan, "scratch": str(scratch), "out_dir": str(dirs["out"]),
                   "candidates": [str(p) for p in cand_paths], "phase1_token": token}
        sp = None
        if spare is None:
            try:
                sp = spawn.worker_plan(request, scratch, interpreter=prep.device != "cuda",
                                       gpu=options.gpu)
            except Exception as exc:  # noqa: BLE001
                out["failure"] = CandidateFailure("sandbox", f"cannot set up the sandbox: {exc}")
                return out
        out["isolation"] = (sp or spare).isolation
        checker = spawn.CheckerSession(
            {"plan": plan, "out_dir": str(dirs["out"]), "n_sides": len(prep.sources)}, private,
            gpu=options.gpu)
        try:
            def phase1() -> CandidateFailure | None:
                stage("checker")
                verdict = checker.ask("checks", options.checker_timeout_s)
                out["verdict"] = verdict
                return _verdict_failure(verdict, private)

            if spare is not None:  # the request goes through its stdin, never to disk
                worker, line = spare.proc, spare.request_line(request)
            else:  # in its own session: killed as a group
                with open(log_path, "ab") as log:
                    worker = subprocess.Popen(sp.argv, env=sp.env, cwd=str(dirs["work"]), stdout=log,
                                              stdin=subprocess.PIPE, stderr=log, start_new_session=True)
                line = None
            proc = spawn.drive_worker(worker, request=line, timeout_s=options.timeout_s,
                                      log_path=log_path, phase1=dirs["out"] / "phase1.json", phase1_token=token,
                                      on_phase1=phase1, on_gate=take_gpu,
                                      on_stage=stage if options.on_stage is not None else None)
            out["log"] = proc.log_tail
            report = _read_report(dirs["out"] / "report.json")
            out["report"] = report or _read_report(dirs["out"] / "phase1.json")
            out["failure"] = _run_failure(proc, report, out["report"], options.timeout_s)
            if out["failure"] is not None:
                return out
            stage("checker")
            verdict = checker.ask("samples", options.checker_timeout_s)
            out["verdict"] = verdict or out["verdict"]
            out["failure"] = _verdict_failure(verdict, private)
            if out["failure"] is None and (plan.get("profile") or {}).get("ncu"):
                stage("profile-ncu")  # still holding the GPU
                out["counters"] = _counters(plan, cand_paths[0], dirs["triton_cache"], options.gpu)
            return out
        finally:
            checker.close()
    finally:
        for release in held:  # the worker and the checker are gone: the GPU is free
            release()
        if plan.get("profile") and out["report"]:  # the cubins the worker wrote for us
            sass.fill_overlap(out["report"].get("compile_info"),
                                    scratch / "out" / profile_stage.SASS_DIR)
        if options.log_path:
            try:
                Path(options.log_path).parent.mkdir(parents=True, exist_ok=True)
                with open(options.log_path, "wb") as dst:
                    for part in (log_path, private / "checker.log"):
                        if part.is_file():
                            dst.write(f"==== {part.name} ====\n".encode() + part.read_bytes())
            except OSError:
                pass
        shutil.rmtree(private, ignore_errors=True)
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:  # a given scratch dir is kept, what we put in it is not
            for name in (*sandbox.SCRATCH_DIRS, "request.json"):
                target = scratch / name
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.exists():
                    target.unlink()


def _counters(plan: dict[str, Any], candidate: Path, triton_cache: Path,
              gpu: int | None) -> tuple[list[dict[str, Any]], str]:
    """Nsight Compute's counters of the profiled shape, from a sandboxed process of its own
    (ncu.py), reusing what the worker compiled."""
    req = plan["profile"]
    entry = next(e for e in plan["timed"] if e["idx"] == req["idx"])
    return ncu.counters(str(req["ncu"]), candidate=candidate, gpu=gpu, triton_cache=triton_cache,
                        request={"target": plan["target"], "timing": plan["timing"],
                                 "shape": entry["shape"], "kind": plan["kinds"][0]})


def _run_failure(proc: spawn.ProcResult, report: dict[str, Any], phase1: dict[str, Any],
                    timeout_s: float) -> CandidateFailure | None:
    """What the worker's run shows, first match: stopped after the correctness checks, a
    timeout (``internal`` before any candidate code ran), a failure the worker reported, a
    death without a complete report; None when it completed."""
    if proc.stopped is not None:
        return proc.stopped
    if proc.timed_out and not proc.candidate_started:
        return CandidateFailure("internal", "the worker did not finish timing the baselines in "
                                "time (before any candidate code ran)")
    if proc.timed_out:
        return CandidateFailure("timeout", f"worker exceeded {timeout_s:g} s "
                                f"(stage {spawn.last_stage(proc.log_tail) or '?'}); killed")
    wf = assemble.reported_failure(report)
    if wf is not None:
        return wf
    if proc.returncode != 0 or not report or report.get("stage") != "done":
        return _death(proc, report or phase1)
    return None


def _verdict_failure(verdict: dict[str, Any] | None, private: Path) -> CandidateFailure | None:
    if verdict is None:
        return CandidateFailure("internal", "checker produced no verdict: "
                                + spawn.tail(private / "checker.log", 1500))
    return assemble.reported_failure(verdict)


def _read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _death(proc: spawn.ProcResult, report: dict[str, Any]) -> CandidateFailure:
    rc = proc.returncode
    if not proc.candidate_started:  # died before any candidate code ran: not its fault
        if spawn.last_stage(proc.log_tail) is None:
            return CandidateFailure("sandbox", f"the worker did not start (exit status {rc}): "
                                    + proc.log_tail[-1500:])
        return CandidateFailure("internal", f"the worker died before the candidate was imported "
                                f"(exit status {rc}): " + proc.log_tail[-1500:])
    stage = spawn.last_stage(proc.log_tail) or report.get("stage") or "?"
    signum = -rc if rc is not None and rc < 0 else None
    if rc is not None and 128 < rc <= 128 + 64:  # a wrapper (bwrap, shell) reports 128 + signal
        signum = rc - 128
    if signum is not None:
        try:
            sig = signal.Signals(signum).name
        except ValueError:
            sig = str(signum)
        how = f"worker killed by {sig} (exit status {rc})"
    else:
        how = f"worker exited with code {rc} without a complete report"
    cls = classify_text(proc.log_tail[-2000:]) or "runtime"
    return CandidateFailure(cls, f"{how} during stage {stage}")


def evaluate(path: str | Path, target: str = "gqa", suite: str | None = None,
             options: EvalOptions | None = None, *,
             acquire_gpu: GpuGate | None = None) -> EvalResult:
    """Evaluate one candidate file; see docs/architecture.md for the result contract.
    ``acquire_gpu``: the GPU gate (gate.py): called when the worker's GPU part is next,
    blocks until the GPU is this evaluation's and returns the function that gives it
    back (called once the evaluation's processes are gone). None: no wait."""
    options = options or EvalOptions()
    try:
        return _evaluate(path, target, suite, options, acquire_gpu)
    finally:  # a pre-started worker serves one evaluation at most, whatever happened to it
        if options.prestarted is not None:
            options.prestarted.close()


def _evaluate(path: str | Path, target: str, suite: str | None, options: EvalOptions,
              acquire_gpu: GpuGate | None) -> EvalResult:
    t0 = time.monotonic()
    prep = _prepare([Path(path)], target, suite)
    kw = {"device": prep.device, "timing": GPU_TIMING if prep.device == "cuda" else NOT_GPU_TIMING}
    bad = _screen(prep, options)
    if bad:
        return EvalResult.rejected(prep.target.name, prep.suite, bad.cls, bad.message, bad.shape,
                                   wall_s=time.monotonic() - t0, **kw)
    profile_idx = _profile_index(prep, options)
    seed = options.seed if options.seed is not None else secrets.randbits(63)
    try:
        names = resolve(prep.target, options.baselines, prep.tdev)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cached = assemble.covered_baselines(options.baseline_ms, prep.target.suite(prep.suite), names)
    plan = build_plan(prep.target, prep.suite, device=prep.tdev, seed=seed, baselines=names,
                      repeat=max(1, int(options.repeat)), cached_baselines=cached,
                      compile_threads=options.resolved_compile_threads())
    if profile_idx is not None and prep.device == "cuda":
        plan["profile"] = {"idx": profile_idx, "calls": options.profile.calls,
                           "ncu": ncu.find() if options.profile.counters else None}
    run = _execute(prep, plan, options, acquire_gpu)
    report, verdict = run["report"], run["verdict"] or {}
    env = assemble.clean_env(report)
    if prep.device == "cuda" and not env.get("driver"):
        from evaluator.env_info import _driver_version

        env["driver"] = _driver_version()  # a file read, no CUDA init in this process
    inproc = report.get("isolation_in_process")
    env["isolation"] = run["isolation"] + (f" + {str(inproc)[:100]}" if inproc else "")
    common = dict(env=env, log_tail=run["log"][-3000:], baselines_cached=cached is not None,
                  compile_info=compile_info_from(report.get("compile_info")), **kw)
    validation = {k: verdict.get(k) for k in ("checked", "passed", "max_error_ratio") if k in verdict}
    fail = run["failure"]
    if fail is None:
        try:
            base = assemble.baseline_times(report, plan)
            primary = assemble.pick_primary(base, names, prep.target.score_against)
            cand = assemble.side_times(report, plan, 0)
            errors = (verdict.get("shape_errors") or [{}])[0]
            shapes, per_pass = assemble.build_shapes(prep.target, plan, cand, base, primary, errors,
                                                     env.get("gpu"), prep.device)
        except CandidateFailure as f:
            fail = f
    if fail is not None:
        return EvalResult.rejected(prep.target.name, prep.suite, fail.cls, fail.message, fail.shape,
                                   validation=validation, wall_s=time.monotonic() - t0,
                                   profile=_profile(prep, options, report, None), **common)
    score = geomean([s.speedup for s in shapes if s.speedup])
    common["profile"] = _profile(prep, options, report, shapes, run.get("counters"))
    return EvalResult(status="ok", target=prep.target.name, suite=prep.suite, score=score,
                      primary_baseline=primary, shapes=shapes, validation=validation,
                      repeats=per_pass if plan["passes"] > 1 else [],
                      wall_s=time.monotonic() - t0, **common)


def _profile_index(prep: _Prepared, options: EvalOptions) -> int | None:
    """The timed index of ``options.profile``'s shape (UsageError: not in the suite)."""
    if options.profile is None:
        return None
    names = [s.name for s in prep.target.suite(prep.suite)]
    if options.profile.shape not in names:
        raise UsageError(f"no shape {options.profile.shape!r} in suite {prep.suite!r} of "
                         f"{prep.target.name} (shapes: {', '.join(names)})")
    return names.index(options.profile.shape)


def _profile(prep: _Prepared, options: EvalOptions, report: dict[str, Any],
             shapes: list[Any] | None, counters: tuple[list[Any], str] | None = None
             ) -> ProfileResult | None:
    """The result's profile: None when none was asked for; ``NO_GPU`` on the interpreter.
    ``counters``: Nsight Compute's (kernel records, note), when they were asked for."""
    req = options.profile
    if req is None:
        return None
    if prep.device != "cuda":
        return ProfileResult(req.shape, note=NO_GPU)
    ms = next((s.ms for s in shapes or [] if s.name == req.shape), None)
    got = profile_from_report(report, req, ms)
    if req.counters and got.available:
        got.add_counters(*(counters or ([], "Nsight Compute not run: ncu is not installed")))
    return got


def compare_candidates(challenger_path: str | Path, champion_path: str | Path, target: str = "gqa",
                       suite: str | None = None, options: EvalOptions | None = None,
                       rounds: int = 5, *, acquire_gpu: GpuGate | None = None) -> CompareResult:
    """Interleaved re-measurement of two candidates in ONE worker on identical inputs.
    ``options.baseline_ms`` is ignored: the comparison always times its baseline.

    Each round times every suite shape for both (who goes first alternates by round);
    timed outputs of both are re-checked by the checker. No validation checks are run
    (both are assumed to have passed ``evaluate`` already). ``acquire_gpu``: as ``evaluate``.
    """
    options = options or EvalOptions()
    try:
        return _compare(challenger_path, champion_path, target, suite, options, rounds, acquire_gpu)
    finally:  # a pre-started worker serves one evaluation at most, whatever happened to it
        if options.prestarted is not None:
            options.prestarted.close()


def _compare(challenger_path: str | Path, champion_path: str | Path, target: str,
             suite: str | None, options: EvalOptions, rounds: int,
             acquire_gpu: GpuGate | None) -> CompareResult:
    t0 = time.monotonic()
    prep = _prepare([Path(challenger_path), Path(champion_path)], target, suite)
    timing = GPU_TIMING if prep.device == "cuda" else NOT_GPU_TIMING
    fail = _screen(prep, options)
    if fail is None:
        seed = options.seed if options.seed is not None else secrets.randbits(63)
        try:
            names = resolve(prep.target, options.baselines or prep.target.baselines[:1] or None,
                            prep.tdev)[:1]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        plan = build_plan(prep.target, prep.suite, device=prep.tdev, seed=seed, baselines=names,
                          repeat=max(2, rounds), rounds=1,
                          compile_threads=options.resolved_compile_threads())
        plan["checks"] = []
        run = _execute(prep, plan, options, acquire_gpu)
        fail = run["failure"]
    if fail is None:
        try:
            base = assemble.baseline_times(run["report"], plan)
            primary = assemble.pick_primary(base, names)
            per_side = []
            for side in (0, 1):
                cand = assemble.side_times(run["report"], plan, side)
                _, per_pass = assemble.build_shapes(prep.target, plan, cand, base, primary, {},
                                                    assemble.clean_env(run["report"]).get("gpu"),
                                                    prep.device)
                per_side.append(per_pass)
            scores = [geomean(p) for p in per_side]
            rounds_out = [{"challenger": a, "champion": b} for a, b in zip(per_side[0], per_side[1])]
        except CandidateFailure as f:
            fail = f
    if fail is not None:
        return CompareResult(None, None, None, 0.0, False,
                             failure={"side": {0: "challenger", 1: "champion"}.get(fail.side, "unknown"),
                                      "class": fail.cls, "message": fail.message},
                             device=prep.device, timing=timing, wall_s=time.monotonic() - t0)
    ratio, noise, better = decide(per_side[0], per_side[1], scores[0], scores[1])
    return CompareResult(scores[0], scores[1], ratio, noise, better, rounds_out,
                         device=prep.device, timing=timing, wall_s=time.monotonic() - t0)
