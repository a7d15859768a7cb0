"""Targets: which attention problem is evolved. Built-ins and target files, one format.

A target is one Python file (format and trust boundary: plugin.py). Built-ins live
beside this file (``gqa``, ``mha``, ``decode``); `get_target` also accepts the path of
a target file (anything ending in ``.py`` or containing a ``/``).
"""

from __future__ import annotations

from pathlib import Path

from evaluator.targets.plugin import Call, Target, TargetError, UnknownTarget, load_builtin, load_file
from evaluator.targets.prefill import Shape

BUILTINS = {"gqa": "evaluator.targets.gqa", "mha": "evaluator.targets.mha",
            "decode": "evaluator.targets.decode"}

__all__ = ["Call", "Shape", "Target", "TargetError", "UnknownTarget", "get_target",
           "list_targets", "is_path"]

_CACHE: dict[str, Target] = {}


def is_path(name: str) -> bool:
    """Whether ``name`` names a target file rather than a built-in target."""
    return name.endswith(".py") or "/" in name


def get_target(name: str) -> Target:
    """A built-in target by name or a target file by path (`UnknownTarget`, `TargetError`)."""
    if is_path(name):
        p = Path(name)
        if not p.is_file():
            raise UnknownTarget(f"target file not found: {name}")
        return load_file(p)  # read every time: the researcher may be editing it
    if name not in BUILTINS:
        raise UnknownTarget(f"unknown target {name!r} (known: {', '.join(BUILTINS)}; "
                            "or the path of a target file)")
    if name not in _CACHE:
        _CACHE[name] = load_builtin(BUILTINS[name])
    return _CACHE[name]


def list_targets() -> list[Target]:
    """The built-in targets."""
    return [get_target(n) for n in BUILTINS]
