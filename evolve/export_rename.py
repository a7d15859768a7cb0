"""Rename a candidate's top-level ``attention`` def (and the references to it) without
touching anything else in the source text: positions come from the AST, edits are made
on the original text so the embedded kernel stays byte-for-byte the candidate elsewhere."""

from __future__ import annotations

import ast
import re

ENTRY = "attention"


class RenameError(ValueError):
    """The candidate source cannot be embedded (no entry point, syntax error, ...)."""


def bound_names(body: list[ast.stmt], args: ast.arguments | None = None) -> set[str]:
    """Names bound directly in one scope (not descending into nested functions/classes)."""
    bound: set[str] = set()
    declared_global: set[str] = set()
    if args is not None:
        for a in args.posonlyargs + args.args + args.kwonlyargs:
            bound.add(a.arg)
        for a in (args.vararg, args.kwarg):
            if a is not None:
                bound.add(a.arg)
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            continue  # its body is another scope
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            declared_global.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        stack.extend(ast.iter_child_nodes(node))
    return bound - declared_global


def _references(tree: ast.Module, name: str) -> list[ast.Name]:
    """Name nodes that refer to the module-level binding of `name`."""
    found: list[ast.Name] = []

    def walk(node: ast.AST, shadowed: bool) -> None:
        if isinstance(node, ast.Name) and node.id == name and not shadowed:
            found.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # decorators, defaults and annotations are evaluated in the enclosing scope
            for outer in node.decorator_list + node.args.defaults + [
                    d for d in node.args.kw_defaults if d is not None]:
                walk(outer, shadowed)
            inner = shadowed or name in bound_names(node.body, node.args)
            for stmt in node.body:
                walk(stmt, inner)
            return
        if isinstance(node, ast.Lambda):
            inner = shadowed or name in bound_names([], node.args)
            walk(node.body, inner)
            return
        if isinstance(node, ast.ClassDef):
            for outer in node.decorator_list + node.bases + [kw.value for kw in node.keywords]:
                walk(outer, shadowed)
            in_class = shadowed or name in bound_names(node.body)
            for stmt in node.body:
                # methods do not see class-level names
                walk(stmt, shadowed if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))
                     else in_class)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            targets = {n.id for g in node.generators for n in ast.walk(g.target)
                       if isinstance(n, ast.Name)}
            inner = shadowed or name in targets
            for child in ast.iter_child_nodes(node):
                walk(child, inner)
            return
        for child in ast.iter_child_nodes(node):
            walk(child, shadowed)

    for stmt in tree.body:
        walk(stmt, False)
    return found


def free_name(source: str, wanted: str) -> str:
    """`wanted`, or `wanted_2`, ... whichever the source text does not contain as a word."""
    name, i = wanted, 1
    while re.search(rf"\b{name}\b", source):
        i += 1
        name = f"{wanted}_{i}"
    return name


def rename_entrypoint(source: str, new: str = "_kernel_attention") -> tuple[str, str]:
    """Rename the top-level ``def attention`` and its references; returns (source, name used)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise RenameError(f"candidate source does not parse: {exc.msg} (line {exc.lineno})") from exc
    defs = [n for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == ENTRY]
    if not defs:
        raise RenameError("candidate source has no top-level `def attention(...)`")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Global, ast.Nonlocal)) and ENTRY in node.names:
            raise RenameError("candidate declares `global attention`; refusing to rename it")
    new = free_name(source, new)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int]] = []  # (line index, char column, length)
    for d in defs:
        line = lines[d.lineno - 1]
        m = re.search(r"\bdef\s+(" + ENTRY + r")\b", line)
        if m is None:
            raise RenameError(f"cannot locate the name of `def {ENTRY}` on line {d.lineno}")
        edits.append((d.lineno - 1, m.start(1), len(ENTRY)))
    for ref in _references(tree, ENTRY):
        raw = lines[ref.lineno - 1].encode("utf-8")
        col = len(raw[: ref.col_offset].decode("utf-8"))
        edits.append((ref.lineno - 1, col, len(ENTRY)))
    for li, col, length in sorted(set(edits), reverse=True):
        line = lines[li]
        if line[col:col + length] != ENTRY:
            raise RenameError(f"rename position mismatch on line {li + 1}")
        lines[li] = line[:col] + new + line[col + length:]
    out = "".join(lines)
    check = ast.parse(out)
    top = {n.name for n in check.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if new not in top or ENTRY in top:
        raise RenameError("rename did not produce the expected top-level definitions")
    return out, new


def split_future_imports(source: str) -> tuple[list[str], str]:
    """Take `from __future__ import ...` statements out of the source (they must open the
    exported module); each removed line is replaced by a comment so line numbers stay."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    future: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future += [alias.name for alias in node.names]
            for li in range(node.lineno - 1, node.end_lineno):
                nl = "\n" if lines[li].endswith("\n") else ""
                lines[li] = "# (moved to the top of this module) " + lines[li].rstrip("\r\n") + nl
    return sorted(set(future)), "".join(lines)
