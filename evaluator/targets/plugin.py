"""A target as a plugin: one Python file, loaded into a `Target`.

A target file is plain Python (trusted: the researcher's own code) defining::

    NAME = "softcap"                      # short name (letters, digits, - and _)
    DESCRIPTION = "one line for `evolve targets`"
    CONTRACT = '''def attention(q, k, v, *, ...) -> torch.Tensor
        docstring: shapes, dtypes, semantics'''   # shown to the agent verbatim
    KINDS = ("gaussian", ...)             # input kinds; the first is the plain one, the
                                          # rest adversarial (large magnitudes, needles ...)
    class Shape: ...                      # a frozen dataclass with .name, .dtype, .rows
                                          # (query rows: the output's dim 2), .out_shape,
                                          # to_dict() and from_dict()
    SUITES = {"smoke": [...], "quick": [...], "default": [...]}   # Shapes to time
    VALIDATION = {"cpu": [...], "gpu": [...], "quick": [...]}      # Shapes to check
    def make_inputs(shape, seed, kind, device) -> Call   # seeded, bit-reproducible
    def reference(call, shape, rows=None) -> Tensor      # fp64 (CPU) / fp32 (GPU)
    def lowp(call, shape, rows=None) -> Tensor           # torch in the shape's dtype
    BASELINES = {"cuda": {name: factory}, "cpu": {name: factory}}

and optionally ``ENTRY`` (the candidate's function name, default ``attention``),
``flops(shape)`` (for TFLOP/s), ``bytes_moved(shape)`` (for GB/s in benchmarks),
``TOLERANCE`` (``max_ratio``, ``abs_floor_ulps``, ``rel_floor_ulps`` of correctness.py),
``EXPORT_WRAPPER`` (``"prefill"``: `evolve export` wraps the kernel with the prefill
module's checks, SDPA fallback and custom op; default ``"plain"``: the contract's function),
``SCORE_AGAINST`` (``"first"``: the first baseline that timed every shape, the default;
``"best"``: the fastest baseline per shape) and ``empty_inputs(shape, device)`` (a Call of
uninitialised tensors for the GPU precompile stage; default: ``make_inputs``).
A baseline factory returns a callable with the candidate's signature. ``reference`` and
``lowp`` return the rows ``rows`` (all when None) of the output's dim 2. ``make_inputs``
and ``empty_inputs`` also run in the worker once the guard is armed: no matmul, softmax,
SDPA or convolution there (they raise, and the candidate would be blamed: ``forbidden``). A target file may
import torch, the standard library and ``evaluator`` modules (e.g. reuse
evaluator/targets/prefill.py, as examples/softcap_target.py does), not files beside it:
the worker runs its source text, not the file. Import evaluator modules at the top, not
inside functions: the worker's guard hides them later, and a late import makes copies.
It also may name a default ``SEED`` kernel (a path relative to the file) for
`evolve start`.

Shared inputs (optional, for inputs too large to rebuild per timed call, e.g. a decode KV
cache of 32 GiB). By default every timed call gets fresh inputs from ``make_inputs`` and
the harness keeps a few sets alive (timing.py). A target may instead define both::

    def make_shared(shape, seed, kind, device) -> dict[str, Tensor]   # the large inputs
    def make_call(shape, shared, seed, kind, device) -> Call          # one timed call

The harness (evaluator/timed_inputs.py) builds the shared tensors once per shape, pass
and side, never rotates or copies them, and frees them before the next; ``make_call``
builds the fresh per-call inputs around them (new values and storage every call) and
may edit small slices of the shared tensors through ``shared.plant(name, index,
values)`` (needles aligned with the fresh query, poison past a length), which the
harness undoes after the call, so each call sees the base content plus its own edits,
reproducibly in the checker. Trusted code digests the shared tensors before and after
(a keyed weighted sum): a candidate that modifies them fails ``mutation``. Validation
checks still use ``make_inputs``.

What the worker gets, considered: (a) the inputs as data from the parent -- gigabytes per
call for long KV caches, and fresh inputs per timed call: no; (b) the target module,
loaded in the worker before the candidate exists -- chosen, with the walls below; the
secret the worker holds (the plan's seed) was already in its memory before targets were
plugins, so loading the target adds code, not secrets, to what the candidate could reach.

Where the target runs, and why candidates never see it. The parent loads the file (suites,
validation shapes, plan); the plan carries the target's *spec*: a built-in module name,
or the file's source text and path. The trusted checker builds the reference from that
spec. The sandboxed worker must build the inputs and time the baselines itself (inputs
of a 128k-token KV cache are gigabytes: shipping them as data is not an option), so it
execs the spec's source into a module *before* the candidate is imported -- never
reading the file -- registered under an ``evaluator.`` name, which the guard drops from
``sys.modules`` when it is armed (an import of it is then a real, audited and denied
import). Candidates cannot name it: the static check denies importing ``evaluator`` or any
module not on its allow-list, ``open``, ``globals``/``vars``, frame and ``__dict__``
access; the guard's audit hook denies reading the target file's path from candidate
code (a second wall behind the static check). The reference is never called in the
worker: correctness is judged by the checker process, which candidates never reach.

A malformed file raises `TargetError` with one line naming what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

REQUIRED = ("NAME", "DESCRIPTION", "CONTRACT", "KINDS", "Shape", "SUITES", "VALIDATION",
            "make_inputs", "reference", "lowp", "BASELINES")
SUITE_NAMES = ("smoke", "quick", "default")
TOLERANCE_KEYS = ("max_ratio", "abs_floor_ulps", "rel_floor_ulps")  # correctness.compare's
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


class TargetError(ValueError):
    """A target file that cannot be used; the message is one line naming what is wrong."""


class UnknownTarget(KeyError):
    """The named target does not exist (neither built in nor a file)."""

    def __str__(self) -> str:  # the message itself, not KeyError's quoted repr
        return str(self.args[0]) if self.args else ""


@dataclass
class Call:
    """The arguments of one call of the candidate (or a baseline): ``fn(*args, **kwargs)``."""

    args: tuple
    kwargs: dict = field(default_factory=dict)

    def tensors(self) -> list[Any]:
        """Every tensor argument (positional, then keyword), for mutation/aliasing checks."""
        import torch

        return [a for a in (*self.args, *self.kwargs.values()) if isinstance(a, torch.Tensor)]


class Shared:
    """The shared inputs of one shape's timed calls (``make_shared``'s tensors), with a log
    of the slices ``make_call`` planted, for `undo`. Only trusted code holds this object;
    the candidate receives the tensors themselves."""

    def __init__(self, tensors: dict[str, Any]):
        self.tensors = dict(tensors)
        self._log: list[tuple[Any, Any, Any]] = []  # (tensor, index, the values it replaced)

    def __getitem__(self, name: str) -> Any:
        return self.tensors[name]

    def plant(self, name: str, index: Any, values: Any) -> None:
        """``tensors[name][index] = values``, remembering the old values for `undo`."""
        t = self.tensors[name]
        self._log.append((t, index, t[index].clone()))
        t[index] = values

    def undo(self) -> None:
        """Restore every planted slice, newest first (overlapping plants restore exactly)."""
        while self._log:
            t, index, old = self._log.pop()
            t[index] = old


@dataclass(frozen=True)
class Target:
    """A loaded target: the plugin module plus what the evaluator reads of it."""

    name: str
    description: str
    contract: str
    module: ModuleType = field(repr=False, compare=False)
    spec: dict = field(repr=False, compare=False)  # {"name", "module"} or {"name", "path", "source"}
    suites: dict[str, tuple]
    gpu_validation: tuple
    cpu_validation: tuple
    quick_validation: tuple = ()
    kinds: tuple[str, ...] = ("gaussian",)
    entry: str = "attention"
    score_against: str = "first"
    tolerance: dict = field(default_factory=dict)
    export_wrapper: str = "plain"  # evolve export's wrapper: "prefill" (gqa, mha) | "plain"

    @property
    def baselines(self) -> tuple[str, ...]:
        """GPU baseline names, in order (the default set timed on a GPU)."""
        return tuple(self.module.BASELINES.get("cuda", {}))

    def baseline_names(self, device: str) -> tuple[str, ...]:
        return tuple(self.module.BASELINES.get("cuda" if device == "cuda" else "cpu", {}))

    def baseline(self, name: str, device: str) -> Callable:
        table = self.module.BASELINES.get("cuda" if device == "cuda" else "cpu", {})
        if name not in table:
            raise ValueError(f"target {self.name} has no baseline {name!r} "
                             f"(known: {', '.join(table) or 'none'})")
        return table[name]()

    def suite(self, name: str) -> list[Any]:
        from evaluator.failures import CandidateFailure

        if name not in self.suites:
            raise CandidateFailure("internal", f"target {self.name} has no suite {name!r} "
                                   f"(known: {', '.join(self.suites)})")
        return list(self.suites[name])

    def validation_shapes(self, device: str, suite: str | None = None) -> list[Any]:
        """Shapes the correctness stage checks: ``cuda`` -> the GPU covering set (the small
        quick set when ``suite == "quick"`` and the target has one), else the CPU set."""
        if device != "cuda":
            return list(self.cpu_validation)
        if suite == "quick" and self.quick_validation:
            return list(self.quick_validation)
        return list(self.gpu_validation)

    def shape(self, d: dict[str, Any]) -> Any:
        return self.module.Shape.from_dict(d)

    def make_inputs(self, shape: Any, seed: int, kind: str, device: str) -> Call:
        return _as_call(self.module.make_inputs(shape, seed, kind, device))

    def empty_inputs(self, shape: Any, device: str) -> Call:
        fn = getattr(self.module, "empty_inputs", None)
        if fn is None:
            return self.make_inputs(shape, 0, self.kinds[0], device)
        return _as_call(fn(shape, device))

    @property
    def shares_inputs(self) -> bool:
        """Whether timed calls use shared large inputs (``make_shared`` + ``make_call``)."""
        return hasattr(self.module, "make_shared")

    def make_shared(self, shape: Any, seed: int, kind: str, device: str) -> Shared:
        return Shared(self.module.make_shared(shape, seed, kind, device))

    def make_call(self, shape: Any, shared: Shared, seed: int, kind: str, device: str) -> Call:
        return _as_call(self.module.make_call(shape, shared, seed, kind, device))

    def reference(self, call: Call, shape: Any, rows: Any = None) -> Any:
        return self.module.reference(call, shape, rows)

    def lowp(self, call: Call, shape: Any, rows: Any = None) -> Any:
        return self.module.lowp(call, shape, rows)

    def flops(self, shape: Any) -> float | None:
        fn = getattr(self.module, "flops", None)
        return float(fn(shape)) if fn else None

    def bytes_moved(self, shape: Any) -> float | None:
        fn = getattr(self.module, "bytes_moved", None)
        return float(fn(shape)) if fn else None


def _as_call(x: Any) -> Call:
    if isinstance(x, Call):
        return x
    if hasattr(x, "args") and hasattr(x, "kwargs"):  # a Call of another copy of this module
        return Call(tuple(x.args), dict(x.kwargs))
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], dict):
        return Call(tuple(x[0]), dict(x[1]))
    raise TypeError(f"make_inputs returned {type(x).__name__}, expected a Call")


def from_module(mod: ModuleType, spec: dict[str, Any], where: str) -> Target:
    """Validate a plugin module and wrap it (`TargetError`: one line naming the problem)."""
    missing = [n for n in REQUIRED if not hasattr(mod, n)]
    if missing:
        raise TargetError(f"target file {where} is missing {', '.join(missing)} "
                          "(format: evaluator/targets/plugin.py)")
    name = mod.NAME
    if not isinstance(name, str) or not _NAME.match(name):
        raise TargetError(f"target file {where}: NAME must be a short identifier, got {name!r}")
    for attr in ("DESCRIPTION", "CONTRACT"):
        if not isinstance(getattr(mod, attr), str) or not getattr(mod, attr).strip():
            raise TargetError(f"target file {where}: {attr} must be a non-empty string")
    entry = getattr(mod, "ENTRY", "attention")
    if f"def {entry}(" not in mod.CONTRACT:
        raise TargetError(f"target file {where}: CONTRACT must show `def {entry}(...)`")
    kinds = tuple(mod.KINDS) if isinstance(mod.KINDS, (tuple, list)) else ()
    if not kinds or not all(isinstance(k, str) and k for k in kinds):
        raise TargetError(f"target file {where}: KINDS must be a non-empty tuple of names")
    suites = mod.SUITES
    if not isinstance(suites, dict) or "smoke" not in suites:
        raise TargetError(f"target file {where}: SUITES must be a dict with at least 'smoke'")
    for sname, shapes in suites.items():
        if not isinstance(shapes, (tuple, list)):
            raise TargetError(f"target file {where}: suite {sname!r} must be a tuple of Shapes")
        if not shapes:
            raise TargetError(f"target file {where}: suite {sname!r} is empty")
        for s in shapes:
            for a in ("name", "dtype", "rows", "out_shape", "to_dict"):
                if not hasattr(s, a):
                    raise TargetError(f"target file {where}: Shape has no {a!r} "
                                      f"(needs name, dtype, rows, out_shape, to_dict)")
    val = mod.VALIDATION
    if (not isinstance(val, dict) or not val.get("cpu") or not val.get("gpu")
            or not all(isinstance(val.get(k, ()), (tuple, list)) for k in ("cpu", "gpu", "quick"))):
        raise TargetError(f"target file {where}: VALIDATION needs non-empty 'cpu' and 'gpu' lists")
    base = mod.BASELINES
    if (not isinstance(base, dict) or not base.get("cpu")
            or not all(isinstance(t, dict) and all(isinstance(n, str) and callable(f) for n, f in t.items())
                       for t in (base.get("cpu"), base.get("cuda", {})))):
        raise TargetError(f"target file {where}: BASELINES needs a 'cpu' dict of factories "
                          "(and 'cuda' for GPU runs)")
    tol = getattr(mod, "TOLERANCE", {}) or {}
    if not isinstance(tol, dict) or not all(
            k in TOLERANCE_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v > 0 for k, v in tol.items()):
        raise TargetError(f"target file {where}: TOLERANCE must map {', '.join(TOLERANCE_KEYS)} "
                          "to positive numbers")
    for fn in ("make_inputs", "reference", "lowp"):
        if not callable(getattr(mod, fn)):
            raise TargetError(f"target file {where}: {fn} must be a function")
    pair = [hasattr(mod, fn) for fn in ("make_shared", "make_call")]
    if any(pair) and not all(pair):
        raise TargetError(f"target file {where}: shared inputs need both make_shared and make_call")
    if all(pair) and not (callable(mod.make_shared) and callable(mod.make_call)):
        raise TargetError(f"target file {where}: make_shared and make_call must be functions")
    for s in (*(x for v in suites.values() for x in v), *(x for v in val.values() for x in v)):
        _check_shape(mod, s, where)
    score = getattr(mod, "SCORE_AGAINST", "first")
    if score not in ("first", "best"):
        raise TargetError(f"target file {where}: SCORE_AGAINST must be 'first' or 'best'")
    return Target(
        name=name, description=mod.DESCRIPTION.strip().splitlines()[0], contract=mod.CONTRACT.strip(),
        module=mod, spec=spec, suites={k: tuple(v) for k, v in suites.items()},
        gpu_validation=tuple(val["gpu"]), cpu_validation=tuple(val["cpu"]),
        quick_validation=tuple(val.get("quick", ())), kinds=kinds, entry=entry,
        score_against=score, tolerance=dict(tol),
        export_wrapper="prefill" if getattr(mod, "EXPORT_WRAPPER", "plain") == "prefill" else "plain")


def _check_shape(mod: ModuleType, s: Any, where: str) -> None:
    """A shape the plan can carry (``to_dict`` as JSON, rebuilt by ``Shape.from_dict``) and
    the worker can allocate for (a known dtype, integer sizes)."""
    from evaluator.correctness import EPS

    what = f"target file {where}: shape {str(getattr(s, 'name', s))[:60]!r}:"
    if s.dtype not in EPS:
        raise TargetError(f"{what} dtype must be one of {', '.join(EPS)}, got {s.dtype!r}")
    if not (isinstance(s.rows, int) and s.rows >= 1
            and all(isinstance(n, int) and n >= 1 for n in tuple(s.out_shape))):
        raise TargetError(f"{what} rows and out_shape must be positive integers")
    d = s.to_dict()
    try:
        json.dumps(d)
    except (TypeError, ValueError):
        raise TargetError(f"{what} to_dict() must return JSON data (the plan carries it)") from None
    if mod.Shape.from_dict(d) != s:
        raise TargetError(f"{what} Shape.from_dict(shape.to_dict()) must give the shape back")


def _checked(mod: ModuleType, spec: dict[str, Any], where: str) -> Target:
    """`from_module`, any other error of the file's objects (a module ``__getattr__``, a
    ``Shape`` that raises) turned into a one-line `TargetError`."""
    try:
        return from_module(mod, spec, where)
    except TargetError:
        raise
    except Exception as exc:  # noqa: BLE001 - the file's fault, said in one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TargetError(f"target file {where} is malformed: {type(exc).__name__}"
                          + (f": {first}" if first else "")) from None


def load_builtin(module_name: str) -> Target:
    mod = importlib.import_module(module_name)
    return _checked(mod, {"name": getattr(mod, "NAME", "?"), "module": module_name}, module_name)


def load_file(path: str | Path) -> Target:
    """Load a target file (`TargetError` when it is unreadable, broken or incomplete)."""
    p = Path(path)
    try:
        source = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read target file {p}: {getattr(exc, 'strerror', None) or exc}") from None
    return load_source(source, str(p.resolve()))


def load_source(source: str, path: str) -> Target:
    """Exec a target's source text as a module named under ``evaluator.`` (the guard hides
    those from candidates) without reading any file; `TargetError` when it is broken."""
    mod_name = "evaluator._target_file_" + re.sub(r"\W", "_", Path(path).stem)
    mod = ModuleType(mod_name)
    mod.__file__ = path
    sys.modules[mod_name] = mod  # dataclasses look their module up while the class is built
    try:
        exec(compile(source, path, "exec"), mod.__dict__)  # noqa: S102 - the researcher's own file
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any error in the file is the file's fault
        sys.modules.pop(mod_name, None)
        line = getattr(exc, "lineno", None)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TargetError(f"target file {path} failed to load: {type(exc).__name__}"
                          + (f" (line {line})" if line else "") + (f": {first}" if first else "")) from None
    return _checked(mod, {"name": getattr(mod, "NAME", "?"), "path": path, "source": source}, path)


def from_spec(spec: dict[str, Any]) -> Target:
    """The target a plan names (worker and checker): a built-in module, or source text."""
    if spec.get("module"):
        return load_builtin(str(spec["module"]))
    return load_source(str(spec["source"]), str(spec["path"]))
