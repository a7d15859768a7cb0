"""The worker process: untrusted once the candidate is imported.

Run as ``python -I -c ... evaluator.worker.main() REQUEST`` by the runner, inside the
sandbox, cwd/HOME/TRITON_CACHE_DIR in the scratch dir (``-`` instead of REQUEST: pre-started,
the request arrives on stdin after the imports, see prestart.py). Order:

1. import torch/triton, load the target from the plan's spec (source text or a built-in
   module, never the target file: see evaluator/targets/plugin.py), collect env info,
   time the target's baselines (behind the GPU gate, before any candidate code exists in
   the process, so it cannot tamper with them; none when the plan carries cached baseline
   times given by the caller);
2. ``sandbox.apply_in_process``, Triton launches refused (gate.py), ``guard.install``;
   import the candidate(s);
   GPU: ``precompile`` -- the candidate's Triton specialisations for every validation and
   timed shape are discovered without launches and compiled in a thread pool that is
   gone before the next stage (precompile.py); Triton's ``jit_cache_hook`` must be unset
   from then on (else ``forbidden``: tampering);
   the GPU gate (unless the baselines took it): the refuser must still be in force (else
   ``forbidden``), the device is synchronised, ``out/compiled.json``, block for ``gpu``;
3. correctness calls on seeded inputs: NaN-filled blocks of the output's size are
   allocated and freed right before each call (the allocator hands one to
   ``torch.empty``), contract checks (exact ``torch.Tensor``, shape, dtype, device, no
   aliasing of an input's storage), inputs compared bit-for-bit with copies, the guard's
   integrity check; outputs saved raw for the checker; the first check of each shape is
   run twice (second poison 1024) for the unwritten/determinism test;
4. handshake: ``out/phase1.json`` is written and the worker blocks on stdin while the
   trusted checker judges the correctness outputs; only a released worker times;
5. timing (see timing.py; inputs from timed_inputs.py, as the checker rebuilds them: a
   target's shared inputs one set at a time, digest-checked after the candidate's calls),
   thread count compared with the count before the first call.

Before the gate (the caller may time another evaluation on the GPU meanwhile) the
candidate's code runs: its import and its host code during discovery. Triton launches
there are refused; other GPU work (torch operations) is not prevented. It cannot raise
a score: the candidate's own times and its baselines are measured under the gate; cached
baselines come from evaluations that held the GPU alone (exclusive, evolve's lane.py),
and so do rematches. At worst it slows the evaluation timed meanwhile, which can only
lower that candidate's score.

The worker never decides "ok": it writes raw outputs and timings; the trusted checker
and the runner decide. A failure it detects is written as the report's ``failure``
(a forged failure only hurts the candidate itself).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import sys
import threading
import time
import traceback
from hashlib import sha256
from pathlib import Path
from typing import Any

from evaluator import gate, ncu, precompile, profile_stage
from evaluator.correctness import POISON_SECOND
from evaluator.failures import CandidateFailure, classify_exception, classify_text
from evaluator.inputs import torch_dtype
from evaluator.targets.plugin import Call, from_spec
from evaluator.timed_inputs import InputsModified, TimedInputs
from evaluator.timing import BadOutput, TimingParams, time_call


_REPORT: dict[str, Any] = {}
_open = open  # bound before any candidate code exists (a patched builtins.open is reported)
_listdir = os.listdir
_CPU_POISON_BLOCKS = 8
DISCOVERY_SHARE = 0.25  # of the GPU's memory: the most discovery allocates before the gate
_T0 = time.monotonic()


def _stage(name: str) -> None:
    _REPORT["stage"] = name
    print(f"[evaluator-worker] stage: {name} t={time.monotonic() - _T0:.1f}s", file=sys.stderr, flush=True)


class Worker:
    def __init__(self, plan: dict[str, Any], scratch: Path, out_dir: Path, candidates: list[Path],
                 phase1_token: str | None = None):
        self.plan = plan
        self.scratch = scratch
        self.out_dir = out_dir
        self.candidates = candidates
        self.device = plan["device"]
        self.tdev = "cuda" if self.device == "cuda" else "cpu"
        self.params = TimingParams(**plan["timing"])
        self.target = from_spec(plan["target"])  # before the candidate exists in this process
        self.report = _REPORT
        self.report.update({"failure": None, "stage": "start", "timing": [], "baselines": []})
        self.fns: list[Any] = []
        self.modules: list[Any] = []
        self.guard: Any = None  # evaluator.guard once installed (its module leaves sys.modules)
        self.compile_log: profile_stage.CompileLog | None = None  # GPU: Triton's listener
        self.saved: dict[str, str] = {}  # output file -> sha256 of the bytes this worker wrote
        self.own = {"baselines.done"}  # further files of out/ that this worker wrote
        self.phase1_token = phase1_token  # the parent's mark of our phase1.json (never in the report)
        self.refuser: gate.LaunchRefuser | None = None  # Triton launches refused until the gate
        self.gated = False  # the parent gave us the GPU (gate.py)
        self.synchronize: Any = None  # GPU: torch's device sync, bound before the candidate exists
        self.threads0 = threading.active_count()

    # ---- helpers -------------------------------------------------------------------
    def fail(self, cls: str, message: str, shape: str | None = None, side: int | None = None) -> None:
        raise CandidateFailure(cls, message[:2000], shape, side)

    def _integrity(self, shape: Any) -> None:
        """Called after candidate code ran (the guard is installed by then)."""
        msg = self.guard.check_integrity()
        if msg:
            self.fail("forbidden", f"tampering detected: {msg}", shape.name if shape else None)
        self._check_hook(shape)

    def _check_hook(self, shape: Any = None) -> None:
        """Triton's jit_cache_hook skips launches when it returns True: it must stay unset."""
        if precompile.hook_is_set():
            self.fail("forbidden", "tampering detected: triton.knobs.runtime.jit_cache_hook is set",
                      shape.name if shape else None)

    def _call(self, fn, call: Call, shape: Any):
        try:
            out = fn(*call.args, **call.kwargs)
            if self.tdev == "cuda":
                import torch
                torch.cuda.synchronize()
        except CandidateFailure:
            raise
        except BaseException as exc:  # noqa: BLE001 - every candidate error is classified
            tb = traceback.format_exc(limit=6)
            self.fail(classify_exception(exc), f"{type(exc).__name__}: {exc}\n{tb}", shape.name)
        self._integrity(shape)
        return out

    def _save(self, tensor: Any, name: str) -> None:
        """Save an output for the checker and note its digest: candidate code that runs later
        could rewrite the file from C++ (torch.save, a file-mapped storage: no audit event)."""
        import torch

        torch.save(tensor, self.out_dir / name)
        self.saved[name] = _digest(self.out_dir / name)

    def verify_outputs(self) -> None:
        """Right before the checker may read them (phase 1, the end of the run; no candidate
        code runs in between): every output file still holds the bytes this worker wrote."""
        for name, digest in self.saved.items():
            try:
                same = _digest(self.out_dir / name) == digest
            except OSError:
                same = False
            if not same:
                self.fail("forbidden", f"tampering detected: the worker's output {name} was changed "
                          "after it was written")
        stray = sorted(set(_listdir(self.out_dir)) - set(self.saved) - self.own)
        if stray:
            self.fail("forbidden", f"tampering detected: {', '.join(stray)[:200]} in the worker's "
                      "output directory was not written by the worker")

    # ---- stages --------------------------------------------------------------------
    def time_baselines(self) -> None:
        _stage("baselines")
        if not self.plan["baselines"]:
            why = "given by the caller" if self.plan.get("baselines_cached") else "none requested"
            print(f"[evaluator-worker] baselines: not timed ({why})", file=sys.stderr, flush=True)
            return
        t0 = time.monotonic()
        fns = {name: self.target.baseline(name, self.device) for name in self.plan["baselines"]}
        for entry in self.plan["timed"]:
            shape = self.target.shape(entry["shape"])
            rec: dict[str, list[float | None]] = {}
            for name, fn in fns.items():
                rec[name] = []
                for p in range(self.plan["passes"]):
                    refused = False
                    try:
                        with self._inputs(entry["idx"], shape, p) as make:
                            t = time_call(fn, make, params=self.params, device=self.tdev,
                                          check=False, settle=make.settle)
                        rec[name].append(t.ms)
                    except Exception as exc:  # noqa: BLE001 - a backend may refuse a shape
                        print(f"[evaluator-worker] baseline {name} refused {shape.name}: {exc}",
                              file=sys.stderr)
                        rec[name].append(None)
                        if classify_text(str(exc)) == "cuda_fault":
                            raise
                        exc.__traceback__ = None  # its frames hold the shape's inputs
                        refused = True
                    if refused:
                        _release_memory(self.tdev)
            self.report["baselines"].append({"idx": entry["idx"], "times": rec})
        print(f"[evaluator-worker] baselines: timed {', '.join(fns)} on {len(self.plan['timed'])} "
              f"shapes in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

    def _inputs(self, idx: int, shape: Any, p: int, verify: bool = False) -> TimedInputs:
        """Timed calls' inputs of one (shape, pass), as the checker rebuilds them; one set
        of a target's shared inputs at a time (the ``with`` block frees it)."""
        return TimedInputs(self.target, shape, self.plan["seed"], self.plan["kinds"], idx, p,
                           self.tdev, verify=verify)

    def import_candidates(self, profiler: bool = False) -> None:
        """Confine this process, arm the guard, import the candidates (``profiler``: the
        Nsight Compute child's Landlock setting, sandbox.py)."""
        from evaluator import guard, sandbox

        _stage("confine")
        self.report["isolation_in_process"] = sandbox.apply_in_process(self.scratch, profiler=profiler)
        precompile.preimport_kernel_libraries()  # also takes Triton's JIT module for _check_hook
        if self.tdev == "cuda":
            self.compile_log = profile_stage.install(profiler=bool(self.plan.get("profile")))
        self.threads0 = threading.active_count()
        if not self.gated:
            self.refuser = gate.install()
            if self.tdev == "cuda":
                import torch
                self.synchronize = getattr(torch._C, "_cuda_synchronize", torch.cuda.synchronize)
        sources = [_digest(p) for p in self.candidates]  # a rematch's champion is imported second
        hidden = [self.plan["target"]["path"]] if self.plan["target"].get("path") else []
        guard.install(scratch_dir=self.scratch, candidate_path=self.candidates, hidden_paths=hidden,
                      protected_dirs=[self.out_dir, *{p.parent for p in self.candidates}])
        self.guard = guard
        _stage("import")
        for i, path in enumerate(self.candidates):
            name = f"candidate_{i}"
            if _digest(path) != sources[i]:  # only the candidates before it have run
                self.fail("forbidden", f"tampering detected: candidate file {path.name} was changed "
                          "before it was imported", side=0 if i == 1 else None)
            try:
                spec = importlib.util.spec_from_file_location(name, str(path))
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
            except BaseException as exc:  # noqa: BLE001
                self.fail(classify_exception(exc, default="import"), f"importing the candidate raised "
                          f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=6), side=i)
            self._integrity(None)
            fn = getattr(mod, self.target.entry, None)
            if not callable(fn):
                self.fail("contract", f"the candidate defines no callable `{self.target.entry}`", side=i)
            self.fns.append(fn)
            self.modules.append(mod)

    def precompile(self) -> None:
        """Compile every specialisation the checked and timed calls will need, in parallel
        (GPU; best effort, see precompile.py). Discovery calls use their own empty inputs."""
        _stage("precompile")
        cfg = self.plan.get("precompile")
        if self.tdev != "cuda" or not cfg:
            why = "interpreter" if self.tdev != "cuda" else "off"
            print(f"[evaluator-worker] precompile: skipped ({why})", file=sys.stderr, flush=True)
            return
        import torch

        shapes = list(dict.fromkeys([self.target.shape(c["shape"]) for c in self.plan["checks"]]
                                    + [self.target.shape(e["shape"]) for e in self.plan["timed"]]))
        if not self.gated:  # another evaluation may be timing on this GPU meanwhile
            shapes = self._fit_beside_another(shapes, torch.cuda.get_device_properties(0).total_memory)
        calls = [functools.partial(self._discovery_call, fn, shape) for fn in self.fns for shape in shapes]
        namespaces = [vars(m) for m in self.modules]
        stats = precompile.run(calls, namespaces, threads=int(cfg["threads"]),
                               max_specs=int(cfg["max_specs"]), limit_s=float(cfg["limit_s"]))
        print(stats.line(), file=sys.stderr, flush=True)
        torch.cuda.empty_cache()  # discovery's blocks go back: the NaN poison stays effective
        self._threads(None)
        self._integrity(None)

    def await_gpu(self) -> None:
        """The GPU gate (gate.py): Triton launches are allowed again, then the worker
        blocks until the parent gives it the GPU. Once per run."""
        if self.gated:
            return
        if self.refuser is not None:
            msg = gate.lift(self.refuser)
            if msg:
                self.fail("forbidden", f"tampering detected: {msg}")
        if self.synchronize is not None:  # nothing queued before the gate outlives it
            self.synchronize()
        gate.ask(self.out_dir, self.phase1_token, _stage)
        self.own.add(gate.READY)
        self.gated = True

    def _fit_beside_another(self, shapes: list[Any], total: int) -> list[Any]:
        """Before the gate, discovery's empty inputs share the GPU's memory with the
        evaluation being timed: shapes whose inputs exceed ``DISCOVERY_SHARE`` of it (a
        long decode cache: 34 GiB) are left to compile on first use, under the gate."""
        keep = []
        for shape in shapes:
            call = self.target.empty_inputs(shape, "meta")  # sizes only, no memory
            nbytes = sum(t.numel() * t.element_size() for t in call.tensors())
            if nbytes <= DISCOVERY_SHARE * total:
                keep.append(shape)
            else:
                print(f"[evaluator-worker] precompile: {shape.name} left to first use "
                      f"({nbytes / 2**30:.1f} GiB of inputs before the GPU gate)", file=sys.stderr)
        return keep

    def _discovery_call(self, fn, shape: Any) -> None:
        call = self.target.empty_inputs(shape, self.tdev)
        fn(*call.args, **call.kwargs)

    def run_checks(self) -> None:
        import torch

        _stage("correctness")
        self._check_hook()
        spent = dict.fromkeys(("inputs", "poison", "calls", "first calls", "checks", "save"), 0.0)
        seen: set[tuple] = set()  # (side, shape): a shape's first call may compile or load code
        t = time.monotonic()

        def lap(part: str) -> None:
            nonlocal t
            now = time.monotonic()
            spent[part] += now - t
            t = now

        for chk in self.plan["checks"]:
            shape = self.target.shape(chk["shape"])
            call = self.target.make_inputs(shape, chk["seed"], chk["kind"], self.tdev)
            inputs = call.tensors()
            copies = [x.clone() for x in inputs]
            lap("inputs")
            for side, fn in enumerate(self.fns):
                for rep in range(2 if chk["repeat"] else 1):
                    self._poison(shape, float("nan") if rep == 0 else POISON_SECOND)
                    lap("poison")
                    out = self._call(fn, call, shape)
                    key = (side, json.dumps(chk["shape"], sort_keys=True, default=str))
                    lap("calls" if key in seen else "first calls")
                    seen.add(key)
                    self._contract(out, inputs, shape)
                    for x, c in zip(inputs, copies):
                        if not torch.equal(x, c):
                            self.fail("mutation", "the candidate modified an input tensor", shape.name)
                    lap("checks")
                    self._save(torch.Tensor.cpu(out).clone(), f"check{chk['id']}_s{side}_r{rep}.pt")
                    del out
                    lap("save")
            self._threads(shape)
        # where the correctness seconds went (a GPU evaluation's largest stage after compiles)
        print(f"[evaluator-worker] correctness: {len(self.plan['checks'])} checks, "
              + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items()), file=sys.stderr, flush=True)

    def await_verdict(self) -> None:
        """Hand the correctness outputs to the parent and block until it releases us."""
        self.verify_outputs()
        self.own |= set(self.saved)  # judged now: the end of the run verifies the samples only
        self.saved.clear()
        if self.compile_log is not None:  # a rejection at phase 1 still shows what compiled
            self.report["compile_info"] = profile_stage.collect(self.compile_log, load=True)
        tmp = self.out_dir / "phase1.tmp"
        tmp.write_text(json.dumps({**self.report, "phase1_token": self.phase1_token}, default=str))
        _stage("awaiting-verdict")  # announced first: the parent reports it before the checker
        os.replace(tmp, self.out_dir / "phase1.json")
        self.own.add("phase1.json")
        line = sys.stdin.readline()
        if line.strip() != "go":
            raise CandidateFailure("internal", "the parent did not release the worker for timing")

    def _poison(self, shape: Any, value: float) -> None:
        import torch

        n = math.prod(shape.out_shape)
        dt = torch_dtype(shape.dtype)
        if self.tdev != "cuda":
            # several blocks: malloc hands out older free chunks of the same size first
            # (earlier outputs, temporaries); poisoning them all leaves no stale one
            blocks = [torch.full((n,), value, dtype=dt) for _ in range(_CPU_POISON_BLOCKS)]
            del blocks
            return
        # Fill every cached free chunk that could serve an allocation of the output's size:
        # allocate poisoned blocks (best fit, like the candidate's torch.empty will) until
        # the allocator has to reserve a new segment, then free them all.
        blocks = []
        reserved = torch.cuda.memory_reserved()
        for _ in range(256):
            blocks.append(torch.full((n,), value, dtype=dt, device="cuda"))
            if torch.cuda.memory_reserved() > reserved:
                break
        del blocks

    def _contract(self, out, inputs, shape: Any) -> None:
        import torch

        want, dt, dev = tuple(shape.out_shape), torch_dtype(shape.dtype), inputs[0].device
        if type(out) is not torch.Tensor:
            self.fail("contract", f"returned {type(out).__name__}, expected a plain torch.Tensor", shape.name)
        if tuple(out.shape) != want or out.dtype != dt or out.device != dev:
            self.fail("contract", f"returned {tuple(out.shape)} {out.dtype} on {out.device}, expected "
                      f"{want} {dt} on {dev}", shape.name)
        if out.layout != torch.strided:
            self.fail("contract", "returned a non-strided tensor", shape.name)
        o0 = out.untyped_storage().data_ptr()
        o1 = o0 + out.untyped_storage().nbytes()
        for t in inputs:
            s0 = t.untyped_storage().data_ptr()
            s1 = s0 + t.untyped_storage().nbytes()
            if o0 < s1 and s0 < o1:
                self.fail("contract", "the output aliases an input's storage", shape.name)

    def _threads(self, shape: Any) -> None:
        py = threading.active_count()
        if py > self.threads0:
            self.fail("timing_anomaly", f"the candidate started threads ({self.threads0} -> {py})",
                      shape.name if shape else None)

    def run_timing(self) -> None:
        _stage("timing")
        self._check_hook()
        for entry in self.plan["timed"]:
            shape = self.target.shape(entry["shape"])
            rec: dict[str, Any] = {"idx": entry["idx"],
                                   "sides": [{"ms": [], "wall": []} for _ in self.fns]}
            for p in range(self.plan["passes"]):
                sample = {s["call"]: s["rows"] for s in entry["samples"] if s["pass"] == p}
                order = list(range(len(self.fns)))
                if p % 2 == 1:
                    order.reverse()  # compare mode: alternate who goes first each round
                for side in order:
                    self._time_side(entry, shape, p, side, sample, rec["sides"][side])
            self.report["timing"].append(rec)
            self._threads(shape)

    def run_profile(self) -> None:
        """The requested shape's profile (GPU; after timing, see profile_stage.py)."""
        req = self.plan.get("profile")
        if not req or self.tdev != "cuda":
            return
        _stage("profile")
        entry = next(e for e in self.plan["timed"] if e["idx"] == req["idx"])
        shape = self.target.shape(entry["shape"])
        fn = self.fns[0]
        try:
            with self._inputs(entry["idx"], shape, 0) as make:
                call = make(0)
                rec = profile_stage.profile_shape(
                    lambda: fn(*call.args, **call.kwargs), shape=shape.name,
                    calls=int(req["calls"]), after_call=lambda: self._integrity(shape))
                del call
            self.report["profile"] = rec
        except CandidateFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - the evaluation stands; the profile says why
            self.report["profile"] = {"shape": shape.name, "note": f"profile failed: "
                                      f"{type(exc).__name__}: {str(exc)[:300]}"}

    def _time_side(self, entry, shape: Any, p: int, side: int, sample, out: dict) -> None:
        import torch

        try:
            with self._inputs(entry["idx"], shape, p, verify=True) as make:
                t = time_call(self.fns[side], make, params=self.params, device=self.tdev,
                              expect=tuple(shape.out_shape), sample=sample,
                              after_call=lambda: self._integrity(shape), settle=make.settle)
                make.check_unchanged()
        except CandidateFailure as f:
            f.side = side if f.side is None else f.side
            raise
        except BadOutput as exc:
            self.fail("contract", str(exc), shape.name, side)
        except InputsModified as exc:
            self.fail("mutation", str(exc), shape.name, side)
        except BaseException as exc:  # noqa: BLE001
            self.fail(classify_exception(exc), f"during timing: {type(exc).__name__}: {exc}", shape.name,
                      side)
        out["ms"].append(t.ms)
        out["wall"].append([t.wall_ms, t.wall_event_ms, self.params.wall_calls])
        for s in t.samples:  # the checker knows these names from its own copy of the plan
            self._save(s["tensor"].cpu().clone(), f"time{entry['idx']}_s{side}_p{p}_c{s['call']}.pt")


def ncu_child(request: str) -> None:
    """The process Nsight Compute profiles (ncu.py): CUDA started, its output moved to
    ``out/child.log`` (ncu's own stdout carries the counters), then confined and guarded as
    the worker is; ``ncu.WARMUP`` calls of the candidate on one shape, then one inside the
    NVTX range that ncu profiles. Public inputs (seed 0): the checks and timing are over."""
    code = 0
    try:
        req = json.loads(Path(request).read_text())
        import torch

        torch.zeros(1, device="cuda")  # cuInit before Landlock (ncu.py: error 304 otherwise)
        torch.cuda.synchronize()
        sys.stdout.flush()
        sys.stderr.flush()
        log = os.open(Path(req["out_dir"]) / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        plan = {"target": req["target"], "timing": req["timing"], "device": "cuda"}
        w = Worker(plan, Path(req["scratch"]), Path(req["out_dir"]), [Path(req["candidate"])])
        w.gated = True  # the runner still holds the GPU for this evaluation (gate.py)
        w.import_candidates(profiler=True)
        shape = w.target.shape(req["shape"])
        call = w.target.make_inputs(shape, 0, req["kind"], "cuda")
        for _ in range(ncu.WARMUP):
            w._call(w.fns[0], call, shape)
        torch.cuda.nvtx.range_push(ncu.RANGE)
        w._call(w.fns[0], call, shape)
        torch.cuda.nvtx.range_pop()
    except BaseException as exc:  # noqa: BLE001 - the runner reads only ncu's rows
        print(f"[ncu-child] {type(exc).__name__}: {str(exc)[:400]}", file=sys.stderr, flush=True)
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _release_memory(device: str) -> None:
    """Free what a refused call left behind: the frames of its traceback are often in
    reference cycles that hold its inputs (on a 128k-token decode shape, a 32 GiB KV cache)
    until the cyclic collector runs, and the next shape's inputs would not fit beside them
    (H100, 2026-12-06: every baseline of two shapes out of memory)."""
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _digest(path: Path) -> str:
    with _open(path, "rb") as f:
        return sha256(f.read()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    global _T0
    argv = sys.argv[1:] if argv is None else argv
    prestarted = argv[0] == "-"
    if prestarted:  # imports first, then the request from stdin (prestart.py)
        from evaluator.prestart import await_request

        req = await_request(_stage)
        _T0 = time.monotonic()  # stage times count from the request, as in a fresh worker
    else:
        req_path = Path(argv[0])
        req = json.loads(req_path.read_text())
        req_path.unlink()  # the plan (and its seed) is not left lying around for the candidate
    w = Worker(req["plan"], Path(req["scratch"]), Path(req["out_dir"]), [Path(p) for p in req["candidates"]],
               req.get("phase1_token"))
    code = 0
    try:
        if not prestarted:
            _stage("init")
        import torch  # noqa: F401
        import triton  # noqa: F401
        from evaluator.env_info import collect

        if w.device == "cuda":
            torch.cuda.init()
        w.report["env"] = collect(w.device)
        if w.plan["baselines"]:
            w.await_gpu()  # baseline timing is GPU work: no candidate yet, nothing to compile
        w.time_baselines()
        (w.out_dir / "baselines.done").write_text("1")  # the candidate's timeout starts now
        w.import_candidates()
        w.precompile()
        w.await_gpu()
        w.run_checks()
        w.await_verdict()
        w.run_timing()
        w.run_profile()
        w.verify_outputs()  # the profile stage ran candidate code after the last sample was saved
        _stage("done")
    except CandidateFailure as f:
        w.report["failure"] = {"class": f.cls, "message": f.message, "shape": f.shape, "side": f.side}
        code = 3
    except BaseException as exc:  # noqa: BLE001 - an evaluator-side error before the candidate
        cls = classify_text(str(exc)) or "internal"
        w.report["failure"] = {"class": cls, "message": f"{type(exc).__name__}: {exc}\n"
                               + traceback.format_exc(limit=8), "shape": None}
        code = 4
    if w.compile_log is not None:  # display only; binaries are loaded only after a clean run
        try:
            sass_dir = w.out_dir / profile_stage.SASS_DIR if code == 0 and w.plan.get("profile") else None
            if sass_dir is not None:
                sass_dir.mkdir(exist_ok=True)
            w.report["compile_info"] = profile_stage.collect(w.compile_log, load=code == 0,
                                                             sass_dir=sass_dir)
        except BaseException:  # noqa: BLE001 - objects the candidate could have replaced
            pass
    try:
        (w.out_dir / "report.json").write_text(json.dumps(w.report, default=str))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no atexit/CUDA teardown: a faulted context must not hang the exit


if __name__ == "__main__":
    main()

