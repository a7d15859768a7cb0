"""What a source recipe is (`Recipe`) and the ast helpers the recipes share
(recipes.py, recipes_hints.py, recipes_memory.py, recipes_schedule.py)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable, Iterator

LOG2E = "1.4426950408889634"
# where the retired and paying recipes were measured (recipe_bench.py, each against both
# gqa seeds)
ON_H100 = "H100, Triton 3.6 (benchmarks/results/2026-12-06-h100-session7/): "


@dataclass(frozen=True)
class Recipe:
    """A named source transform. `retired`: target ("*": every target) -> why the offline
    operator no longer proposes it there (the measurement that dropped it); the recipe
    still applies, so a benchmark can measure it again on another GPU or Triton version.
    `paid`: target -> the gain (a fraction) it measured against a seed of that target
    (ON_H100): the bandit's prior for it there, before the run has tried it."""
    name: str
    rationale: str
    transform: Callable[[str], "str | None"]
    retired: dict[str, str] = field(default_factory=dict, compare=False)
    paid: dict[str, float] = field(default_factory=dict, compare=False)

    def retired_on(self, target: str) -> str:
        """Why the recipe is not proposed for `target` ("" when it is)."""
        return self.retired.get(target) or self.retired.get("*", "")

    def apply(self, source: str) -> str | None:
        try:
            out = self.transform(source)
        except (SyntaxError, ValueError):
            return None
        if out is None or out == source:
            return None
        try:
            ast.parse(out)
        except SyntaxError:
            return None
        return out


def is_jit(fn: ast.FunctionDef) -> bool:
    """Decorated with (triton.)jit or (triton.)autotune, called or not."""
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name in ("jit", "autotune"):
            return True
    return False


def wrap_call(prefix: str, func: str, args: list[str], indent: str, width: int = 96) -> list[str]:
    """`prefix func(arg, arg, ...)` wrapped under the open parenthesis."""
    head = f"{indent}{prefix}{func}("
    pad = " " * len(head)
    lines, cur = [], head
    for i, a in enumerate(args):
        piece = a + (", " if i < len(args) - 1 else ")")
        if len(cur) + len(piece.rstrip()) > width and cur not in (head, pad):
            lines.append(cur.rstrip())
            cur = pad
        cur += piece
    lines.append(cur)
    return lines




def is_gluon(fn: ast.FunctionDef) -> bool:
    """Decorated with gluon.jit: explicit layouts written for one CTA of a given size."""
    return any(isinstance(t, ast.Attribute) and t.attr == "jit" and isinstance(t.value, ast.Name)
               and t.value.id == "gluon"
               for t in (d.func if isinstance(d, ast.Call) else d for d in fn.decorator_list))


def jit_functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Module-level @jit functions by name (triton.jit and gluon.jit alike)."""
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and is_jit(n)}


def calls_to(node: ast.AST, attr: str, module: str | None = None) -> Iterator[ast.Call]:
    """Calls `module.attr(...)` (any receiver when module is None) inside node."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == attr \
                and (module is None or (isinstance(n.func.value, ast.Name)
                                        and n.func.value.id == module)):
            yield n


def launches(tree: ast.Module) -> list[ast.Call]:
    """Kernel launches `kernel[grid](...)` of the module's @jit functions."""
    kernels = set(jit_functions(tree))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Subscript) and isinstance(n.func.value, ast.Name)
            and n.func.value.id in kernels]


def add_keyword(source: str, call: ast.Call, text: str) -> tuple[ast.AST, str]:
    """A splice edit that appends `text` (e.g. "maxnreg=168") to a call's arguments."""
    seg = ast.get_source_segment(source, call)
    if seg is None or not seg.rstrip().endswith(")"):
        raise ValueError("call text not found")
    body = seg.rstrip()[:-1].rstrip()
    tail = seg.rstrip()[len(body):-1]  # between the last argument and ")"
    if body.endswith(",") and "\n" in tail:  # one argument per line, trailing comma
        last = body.rsplit("\n", 1)[-1]
        ind = last[:len(last) - len(last.lstrip())]
        return call, f"{body}\n{ind}{text},{tail})"
    sep = "" if body.endswith("(") else (" " if body.endswith(",") else ", ")
    return call, f"{body}{sep}{text})"


def insert_lines(source: str, after_line: int, lines: list[str]) -> str:
    """`source` with `lines` inserted after 1-based line `after_line` (0: at the top)."""
    out = source.splitlines(keepends=True)
    out[after_line:after_line] = [ln + "\n" for ln in lines]
    return "".join(out)


def indent_of(source: str, node: ast.AST) -> str:
    line = source.splitlines()[node.lineno - 1]
    return line[:len(line) - len(line.lstrip())]


def calls_named(fn: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id == name]


def assigns(fn: ast.AST, name: str) -> list[ast.Assign]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name) and n.targets[0].id == name]


def segment(source: str, node: ast.AST) -> str:
    text = ast.get_source_segment(source, node)
    if text is None:
        raise ValueError("no source segment")
    return text


def param_names(fn: ast.FunctionDef) -> list[str]:
    return [a.arg for a in fn.args.args]
