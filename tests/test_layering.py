"""The layering of docs/architecture.md, checked on the source: `evolve` and `dashboard`
import only the names `evaluator/__init__.py` exports; `evaluator` imports nothing of
them; the loop has no mixins and no setattr."""

from __future__ import annotations

import ast
from pathlib import Path

import evaluator

ROOT = Path(__file__).resolve().parent.parent
PENDING: set[str] = set()


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


def test_evolve_imports_only_the_evaluators_public_api():
    public = set(evaluator.__all__)
    bad = []
    for path in sorted((ROOT / "evolve").rglob("*.py")) + sorted((ROOT / "dashboard").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, module, names in _imports(path):
            if module.startswith("evaluator.") and rel not in PENDING:
                bad.append(f"{rel}:{line}: import of {module}")
            elif module == "evaluator":
                bad += [f"{rel}:{line}: {n} is not in evaluator.__all__"
                        for n in names if n not in public]
    assert bad == []


def test_the_evaluator_imports_nothing_of_evolve_or_the_dashboard():
    bad = [f"{p.name}:{line}: {module}" for p in sorted((ROOT / "evaluator").rglob("*.py"))
           for line, module, _ in _imports(p) if module.split(".")[0] in ("evolve", "dashboard")]
    assert bad == []


def test_the_loop_has_no_mixins_and_no_setattr():
    for path in (ROOT / "evolve").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "Mixin" not in text and "setattr(" not in text, path
