"""Read and rewrite a kernel's module-level CONFIG / SEARCH_SPACE literals with `ast`.

Rewrites splice only the changed value's source text (`splice`, also used by the
recipes), so comments and layout of the rest of the file stay as they were (diffs stay
one line per knob).
"""

from __future__ import annotations

import ast
from typing import Any


class ConfigEditError(Exception):
    """CONFIG is missing, not a literal dict, or a value cannot be written."""


def _module_dict(tree: ast.Module, name: str) -> ast.Dict | None:
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == name and isinstance(value, ast.Dict):
            return value
    return None


def read_literal_dict(source: str, name: str) -> dict[str, Any] | None:
    """The literal value of module-level `name = {...}`, or None when absent / not literal."""
    try:
        node = _module_dict(ast.parse(source), name)
        return ast.literal_eval(node) if node is not None else None
    except (SyntaxError, ValueError):
        return None


def read_config(source: str) -> dict[str, Any]:
    return read_literal_dict(source, "CONFIG") or {}


def read_search_space(source: str) -> dict[str, list]:
    space = read_literal_dict(source, "SEARCH_SPACE") or {}
    return {k: list(v) for k, v in space.items() if isinstance(v, (list, tuple)) and len(v) > 0}


def _literal(value: Any) -> str:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    raise ConfigEditError(f"cannot write CONFIG value {value!r}")


def rewrite_config(source: str, updates: dict[str, Any]) -> str:
    """Return `source` with CONFIG[key] = value for each update (keys must already exist)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ConfigEditError(f"source does not parse: {e}") from None
    node = _module_dict(tree, "CONFIG")
    if node is None:
        raise ConfigEditError("no literal module-level CONFIG dict")
    edits, found = [], set()
    for k, v in zip(node.keys, node.values):
        if isinstance(k, ast.Constant) and k.value in updates:
            edits.append((v, _literal(updates[k.value])))
            found.add(k.value)
    missing = set(updates) - found
    if missing:
        raise ConfigEditError(f"CONFIG has no key(s) {sorted(missing)}")
    return splice(source, edits)


def splice(source: str, edits: list[tuple[ast.AST, str]]) -> str:
    """`source` with each node's text (as parsed from this source) replaced."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def pos(lineno: int, col: int) -> int:
        # ast columns are UTF-8 byte offsets
        return offsets[lineno - 1] + len(lines[lineno - 1].encode("utf-8")[:col].decode("utf-8"))

    spans = [(pos(n.lineno, n.col_offset), pos(n.end_lineno, n.end_col_offset), text)
             for n, text in edits]
    out = source
    for start, end, text in sorted(spans, reverse=True):
        out = out[:start] + text + out[end:]
    return out
