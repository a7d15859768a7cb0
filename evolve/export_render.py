"""Render the standalone module of an exported kernel from the template file."""

from __future__ import annotations

import ast
import pprint
from importlib import resources
from string import Template

from evolve.export_meta import ExportMeta
from evolve.export_rename import RenameError, rename_entrypoint, split_future_imports

TEMPLATE = "export_module.py.tmpl"


def template_text() -> str:
    return (resources.files("evolve") / "templates" / TEMPLATE).read_text(encoding="utf-8")


def docstring_literal(text: str) -> str:
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{body}\n"""'


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _fill(meta: ExportMeta, kernel_source: str, kernel_name: str, future: list[str]) -> str:
    fmt = lambda obj: pprint.pformat(obj, width=100, sort_dicts=False)  # noqa: E731
    envelope = meta.envelope.modes
    return Template(template_text()).substitute(
        docstring=docstring_literal(meta.docstring_text()),
        future_imports="".join(f"from __future__ import {name}\n" for name in future),
        provenance=fmt(meta.provenance()),
        envelope=fmt(envelope),
        envelope_text=meta.envelope.text(),
        bench_shapes=fmt(meta.bench_shapes),
        bench_default=repr(meta.suite if meta.suite in meta.bench_shapes
                           else ("quick" if "quick" in meta.bench_shapes else "all")),
        run=meta.run,
        candidate_id=str(meta.candidate_id),
        kernel_name=kernel_name,
        kernel_source=kernel_source.rstrip("\n") + "\n",
        op_name=repr(meta.op_name()),
        op_name_plain=meta.op_name(),
    )


def render_module(source: str, meta: ExportMeta) -> str:
    """The text of the exported module: candidate source verbatim (entry point renamed,
    `from __future__` lines moved to the top) between a provenance header and a wrapper."""
    renamed, kernel_name = rename_entrypoint(source)
    future, body = split_future_imports(renamed)
    wrapper_names = _top_level_names(ast.parse(_fill(meta, "pass\n", kernel_name, [])))
    clash = sorted(_top_level_names(ast.parse(body)) & (wrapper_names - {kernel_name}))
    if clash:
        raise RenameError(f"candidate defines names the export wrapper needs: {', '.join(clash)}")
    text = _fill(meta, body, kernel_name, future)
    try:
        compile(text, "<exported module>", "exec")
    except SyntaxError as exc:
        raise RenameError(f"rendered module does not compile: {exc.msg} (line {exc.lineno})") from exc
    return text
