"""Read and rewrite a kernel's module-level CONFIG / SEARCH_SPACE literals with `ast`.

Rewrites splice only the changed value's source text (`splice`, also used by the
recipes), so comments and layout of the rest of the file stay as they were (diffs stay
one line per knob). A classed CONFIG ({class: {knob: value}}, operators/shape_classes.py)
is addressed with (class, knob) keys; a flat one with knob names.
"""

from __future__ import annotations

import ast
from typing import Any, Iterator


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


def read_search_space(source: str) -> dict[str, Any]:
    """knob -> allowed values, or class -> {knob -> allowed values} (see `class_space`)."""
    space = read_literal_dict(source, "SEARCH_SPACE") or {}
    out: dict[str, Any] = {}
    for k, v in space.items():
        if isinstance(v, (list, tuple)) and len(v) > 0:
            out[k] = list(v)
        elif isinstance(v, dict):
            out[k] = {n: list(x) for n, x in v.items() if isinstance(x, (list, tuple)) and x}
    return out


def _literal(value: Any) -> str:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    raise ConfigEditError(f"cannot write CONFIG value {value!r}")


Key = str | tuple[str, str]  # a flat knob, or (class, knob) of a classed CONFIG


def _config_node(source: str, name: str = "CONFIG") -> ast.Dict:
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ConfigEditError(f"source does not parse: {e}") from None
    node = _module_dict(tree, name)
    if node is None:
        raise ConfigEditError(f"no literal module-level {name} dict")
    return node


def _entries(node: ast.Dict) -> dict[Key, ast.expr]:
    """Every value node of a literal dict, nested dicts' values under (outer, inner)."""
    out: dict[Key, ast.expr] = {}
    for k, v in zip(node.keys, node.values):
        if not isinstance(k, ast.Constant):
            continue
        out[k.value] = v
        if isinstance(v, ast.Dict):
            for k2, v2 in zip(v.keys, v.values):
                if isinstance(k2, ast.Constant):
                    out[(k.value, k2.value)] = v2
    return out


def rewrite_config(source: str, updates: dict[Key, Any]) -> str:
    """Return `source` with CONFIG[key] = value (CONFIG[cls][knob] for a (cls, knob) key)
    for each update; keys must already exist."""
    entries = _entries(_config_node(source))
    missing = [k for k in updates if k not in entries or isinstance(entries[k], ast.Dict)]
    if missing:
        raise ConfigEditError(f"CONFIG has no knob(s) {sorted(map(str, missing))}")
    return splice(source, [(entries[k], _literal(v)) for k, v in updates.items()])


def add_knob(source: str, knob: str, value: Any, allowed: list) -> str:
    """`source` with a new knob in CONFIG (in every class of a classed one) and its
    allowed values in SEARCH_SPACE (every class of a per-class one, when present)."""
    edits = []
    texts = {"CONFIG": _literal(value), "SEARCH_SPACE": _list(allowed)}
    for name, node in _config_and_space(source):
        text = texts[name]
        inner = [v for v in node.values if isinstance(v, ast.Dict)]
        nested = bool(inner) and len(inner) == len(node.values)
        if name == "SEARCH_SPACE" and not nested and inner:
            continue  # a mixed space: leave it alone
        for d in inner if nested else [node]:
            if any(isinstance(k, ast.Constant) and k.value == knob for k in d.keys):
                raise ConfigEditError(f"{name} already has {knob!r}")
            if not d.values:
                raise ConfigEditError(f"{name} has an empty dict")
            last = d.values[-1]
            edits.append((last, f'{ast.get_source_segment(source, last)}, "{knob}": {text}'))
    return splice(source, edits)


def _config_and_space(source: str) -> Iterator[tuple[str, ast.Dict]]:
    """("CONFIG", its dict node) and, when the source has one, ("SEARCH_SPACE", ...)."""
    yield "CONFIG", _config_node(source, "CONFIG")
    try:
        yield "SEARCH_SPACE", _config_node(source, "SEARCH_SPACE")
    except ConfigEditError:
        return


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


def _format_entry(indent: str, key: str, value: dict[str, Any], width: int = 92) -> str:
    """`"key": {...},` on one line, wrapped under the brace when longer than width."""
    head = f'{indent}"{key}": {{'
    items = [f'"{k}": {_literal(v) if not isinstance(v, list) else _list(v)}'
             for k, v in value.items()]
    lines, cur = [], head
    for i, it in enumerate(items):
        piece = it + ("}," if i == len(items) - 1 else ", ")
        if len(cur) + len(piece.rstrip()) > width and cur != head:
            lines.append(cur.rstrip())
            cur = " " * len(head)
        cur += piece
    lines.append(cur if items else head + "},")
    return "\n".join(lines)


def _list(values: list) -> str:
    return "[" + ", ".join(map(_literal, values)) + "]"


def add_class(source: str, after: str, key: str, settings: dict[str, Any]) -> str:
    """`source` with a new CONFIG class `key` (placed after class `after`) holding
    `settings`; a per-class SEARCH_SPACE gets a copy of `after`'s allowed values."""
    lines = source.splitlines(keepends=True)
    edits: list[tuple[ast.AST, str]] = []
    for name, node in _config_and_space(source):
        keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
        if name == "SEARCH_SPACE" and not (after in keys and isinstance(
                node.values[keys.index(after)], ast.Dict)):
            continue  # a shared space covers the new class too
        if after not in keys or key in keys:
            raise ConfigEditError(f"{name} has no class {after!r} or already has {key!r}")
        value_node = node.values[keys.index(after)]
        value = ast.literal_eval(value_node) if name == "SEARCH_SPACE" else settings
        first = lines[node.keys[keys.index(after)].lineno - 1]
        indent = first[:len(first) - len(first.lstrip())]
        # right after `after`'s value, so a dict without a trailing comma (or on one line)
        # stays valid: `{..}` -> `{..},\n<indent>"key": {..}`
        entry = _format_entry(indent, key, value).removesuffix(",")
        edits.append((value_node, f"{ast.get_source_segment(source, value_node)},\n{entry}"))
    return splice(source, edits)
