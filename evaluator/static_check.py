"""Static (AST) gate for candidate kernels: the cheap first filter before any process starts.

`check_source(source)` returns the rule violations found ([] = clean). Any violation
makes the evaluation fail with class ``forbidden``. The rules (data in
`evaluator/static_rules.py`, prose in knowledge/evaluator-rules.md):

* imports: only torch / triton / a little of the standard library; no relative or
  star imports; nothing below a denied prefix (torch.nn, torch.ops, triton.testing ...);
* names: no reference (by attribute chain, import, or literal ``getattr``) to a denied
  qualified name (torch.matmul, torch.softmax, SDPA, streams, CUDA graphs ...);
  tensor methods that reach cuBLAS/softmax (``x.matmul``, ``x.softmax``) are denied on
  anything that is not Triton's language; ``getattr`` only with a literal name;
* dynamic code / introspection: no eval/exec/compile/__import__/open/globals/vars/
  setattr; no dunder attribute other than ``__name__``/``__doc__``/``__qualname__``;
* the ``@`` operator only inside ``@triton.jit`` functions (there it is ``tl.dot``);
* no ``try/except`` (a fallback route to torch); ``try/finally`` is fine;
* no classes deriving from torch types, no metaclasses, no ``__torch_function__``,
  ``__del__``, module ``__getattr__``;
* no attribute assignment or deletion except on ``self`` (monkey-patching);
* no 3-argument ``type()`` (dynamic classes).

Decisions: ``os`` is banned outright (no environment reads: kernels need no
configuration from outside, and the worker's environment is scrubbed anyway);
``try/except`` is banned entirely (honest kernels do not need it, and it is the classic
fallback route), ``try/finally`` is allowed; ``@`` is allowed only inside Triton
kernels, where it is ``tl.dot``; ``open`` is banned even for reading; ``data_ptr`` and
``id()`` are banned (address-keyed caches); ``torch.cuda`` is deny-by-default except for
device queries.

The runtime guard (evaluator/guard.py) enforces the important ones again at run time;
this check exists so that cheating is obvious and cheap to reject.

`gpu_only_reason(source)` is not a rule: it says why a (clean) candidate cannot run on the
Triton interpreter (it imports a GPU-only module such as Gluon, ``GPU_ONLY_MODULES``), so
that an evaluation without a GPU answers ``needs_gpu`` instead of starting a worker.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from evaluator import static_rules as R


@dataclass(frozen=True)
class Violation:
    rule: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


def _prefix_rule(name: str, rules: dict[str, str]) -> tuple[str, str] | None:
    """The longest rule in `rules` that is `name` or a dotted prefix of it."""
    best: tuple[str, str] | None = None
    for key, why in rules.items():
        if name == key or name.startswith(key + "."):
            if best is None or len(key) > len(best[0]):
                best = (key, why)
    return best


def denied_name(qualified: str) -> str | None:
    """Why `qualified` (a resolved dotted name) is forbidden, or None when it is allowed."""
    parts = qualified.split(".")
    for part in parts[1:]:
        if part in R.DANGEROUS_COMPONENTS:
            return f"reaches the module {part!r} through an attribute"
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return f"private attribute {part!r} of a library (internals are off limits)"
    hit = _prefix_rule(qualified, R.DENIED_NAMES)
    if hit is None:
        if qualified.startswith("torch.Tensor."):
            return "unbound tensor methods / patching torch.Tensor"
        return None
    for ok in R.ALLOWED_NAMES:
        if (qualified == ok or qualified.startswith(ok + ".")) and len(ok) > len(hit[0]):
            return None
    return f"{hit[1]} ({hit[0]})"


def module_verdict(module: str) -> str | None:
    """Why importing `module` is forbidden, or None."""
    why = denied_name(module)
    if why:
        return why
    top = module.split(".")[0]
    if top in R.ALLOWED_MODULES:
        return None
    reason = R.KNOWN_BAD_IMPORTS.get(top, "not on the import allow-list")
    return f"{reason} ({top})"


def _chain(node: ast.AST) -> list[str] | None:
    """['torch', 'nn', 'functional'] for torch.nn.functional; None when not a plain chain."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


class _Checker(ast.NodeVisitor):
    def __init__(self, bound: set[str]) -> None:
        self.violations: list[Violation] = []
        self.aliases: dict[str, str] = {}   # local name -> qualified module/attribute
        self.bound = bound                  # every name the module binds somewhere
        self.jit_depth = 0
        self.inner: set[int] = set()         # Attribute nodes inside a longer chain

    # -- helpers -----------------------------------------------------------------
    def flag(self, rule: str, node: ast.AST, message: str) -> None:
        self.violations.append(Violation(rule, getattr(node, "lineno", 0), message))

    def qualify(self, node: ast.AST) -> str | None:
        parts = _chain(node)
        if not parts or parts[0] not in self.aliases:
            return None
        return ".".join([self.aliases[parts[0]], *parts[1:]])

    def is_triton(self, node: ast.AST) -> bool:
        q = self.qualify(node)
        return q is not None and q.split(".")[0] in R.TRITON_ROOTS

    # -- imports -----------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            why = module_verdict(a.name)
            if why:
                self.flag("import", node, f"import {a.name}: {why}")
            if a.asname:
                self.aliases[a.asname] = a.name
            else:
                top = a.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.flag("import", node, "relative imports are not allowed (a candidate is one file)")
            return
        mod = node.module or ""
        why = module_verdict(mod)
        if why:
            self.flag("import", node, f"from {mod} import ...: {why}")
        for a in node.names:
            if a.name == "*":
                self.flag("import", node, f"from {mod} import *: star imports hide what is used")
                continue
            full = f"{mod}.{a.name}"
            if not why:
                sub = denied_name(full)
                if sub:
                    self.flag("import", node, f"from {mod} import {a.name}: {sub}")
            self.aliases[a.asname or a.name] = full

    # -- names, attributes, calls -------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        # getattr/type as a direct call are judged in visit_Call, which does not come here
        if node.id in ("getattr", "type") and isinstance(node.ctx, ast.Load) and node.id not in self.bound:
            self.flag("getattr" if node.id == "getattr" else "dynamic", node,
                      f"{node.id} used as a value (only direct calls are allowed)")
        elif node.id in R.DENIED_BUILTINS and node.id != "getattr":
            self.flag("builtin", node, f"{node.id}: {R.DENIED_BUILTINS[node.id]}")
        elif node.id.startswith("__") and node.id.endswith("__") and node.id not in ("__name__", "__file__", "__doc__"):
            self.flag("dunder", node, f"{node.id}: interpreter internals are off limits")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__") and attr not in R.ALLOWED_DUNDER_ATTRS:
            self.flag("dunder", node, f".{attr}: introspection/patching of interpreter internals")
        if isinstance(node.value, ast.Attribute):
            self.inner.add(id(node.value))   # judge the whole chain once, at its outer end
        q = self.qualify(node) if id(node) not in self.inner else None
        why = denied_name(q) if q is not None else None
        if why:
            self.flag("name", node, f"{q}: {why}")
        elif attr in R.DENIED_METHODS and not self.is_triton(node.value):
            self.flag("method", node, f".{attr}: {R.DENIED_METHODS[attr]}")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and _root_name(node) != "self":
            self.flag("patch", node, f"assigning/deleting attribute .{attr} (monkey-patching) is not allowed")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("getattr", "type"):
            if f.id == "getattr":
                self._check_getattr(node)
            elif len(node.args) == 3:
                self.flag("dynamic", node, "type(name, bases, dict) builds classes dynamically")
            for a in [*node.args, *node.keywords]:  # not node.func: visit_Name flags bare uses
                self.visit(a)
            return
        if isinstance(f, ast.Name) and f.id in R.SHADOWABLE_BUILTINS and f.id not in self.bound:
            self.flag("builtin", node, f"{f.id}(): {R.SHADOWABLE_BUILTINS[f.id]}")
        self.generic_visit(node)

    def _check_getattr(self, node: ast.Call) -> None:
        if len(node.args) < 2 or not (isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            self.flag("getattr", node, "getattr with a computed attribute name (obfuscation) is not allowed")
            return
        name = node.args[1].value
        if name.startswith("__") and name.endswith("__") and name not in R.ALLOWED_DUNDER_ATTRS:
            self.flag("dunder", node, f"getattr(..., {name!r}): interpreter internals are off limits")
        if name in R.DENIED_METHODS and not self.is_triton(node.args[0]):
            self.flag("method", node, f"getattr(..., {name!r}): {R.DENIED_METHODS[name]}")
        base = self.qualify(node.args[0])
        if base is not None:
            why = denied_name(f"{base}.{name}")
            if why:
                self.flag("name", node, f"getattr({base}, {name!r}): {why}")

    # -- operators and statements -------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp | ast.AugAssign) -> None:
        if isinstance(node.op, ast.MatMult) and not self.jit_depth:
            op = "@=" if isinstance(node, ast.AugAssign) else "the @ operator"
            self.flag("matmul", node, f"{op} outside a @triton.jit kernel runs torch matmul (cuBLAS)")
        self.generic_visit(node)

    visit_AugAssign = visit_BinOp

    def visit_Assign(self, node: ast.Assign) -> None:
        q = self.qualify(node.value) if isinstance(node.value, (ast.Name, ast.Attribute)) else None
        for t in node.targets:
            if isinstance(t, ast.Name) and q is not None:
                self.aliases[t.id] = q
        self.generic_visit(node)

    def visit_Try(self, node: ast.AST) -> None:
        if getattr(node, "handlers", None):
            self.flag("try-except", node, "try/except is not allowed (fallback routes); let errors surface")
        self.generic_visit(node)

    visit_TryStar = visit_Try

    def _visit_func(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name in R.DENIED_DUNDER_DEFS:
            self.flag("dunder-def", node, f"defining {node.name} is not allowed (lazy outputs, hooks, finalizers)")
        is_jit = any(self.qualify(d.func if isinstance(d, ast.Call) else d) in R.TRITON_DECORATORS
                     for d in node.decorator_list)
        for d in node.decorator_list:
            self.visit(d)
        self.jit_depth += is_jit
        for stmt in node.body:
            self.visit(stmt)
        self.jit_depth -= is_jit
        for d in [*node.args.defaults, *node.args.kw_defaults]:
            if d is not None:
                self.visit(d)

    visit_FunctionDef = _visit_func
    visit_AsyncFunctionDef = _visit_func

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for b in node.bases:
            q = self.qualify(b)
            if q is not None and q.split(".")[0] in ("torch", "triton"):
                self.flag("subclass", node, f"class {node.name}({q}): subclassing torch/triton types is not allowed")
        for k in node.keywords:
            self.flag("subclass", node, f"class {node.name}({k.arg}=...): metaclasses are not allowed")
        self.generic_visit(node)


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the module binds anywhere (parameters, assignments, defs, imports)."""
    bound: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            bound.add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.alias):
            bound.add((n.asname or n.name).split(".")[0])
    return bound


def gpu_only_reason(source: str) -> str | None:
    """Why `source` can only run on a CUDA GPU (it imports a ``GPU_ONLY_MODULES`` module,
    in any import form), or None. A source that does not parse gives None (the syntax
    check answers it)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            hit = _prefix_rule(name, R.GPU_ONLY_MODULES)
            if hit is not None:
                return f"{hit[1]} (line {node.lineno}: imports {name})"
    return None


def check_source(source: str, filename: str = "candidate.py") -> list[Violation]:
    """All static-rule violations of a candidate's source; [] when it is clean."""
    if len(source.encode("utf-8", "replace")) > R.MAX_SOURCE_BYTES:
        return [Violation("size", 0, f"{filename} is larger than {R.MAX_SOURCE_BYTES} bytes")]
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
        return [Violation("syntax", e.lineno or 0, f"cannot parse {filename}: {e.msg}")]
    checker = _Checker(_bound_names(tree))
    checker.visit(tree)
    return list(dict.fromkeys(sorted(checker.violations, key=lambda v: (v.line, v.rule))))
