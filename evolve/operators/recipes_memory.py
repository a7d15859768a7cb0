"""Memory recipes: device-side TMA descriptors for the K/V loads and the O store.

Each applies only where its pattern is present (the pointer-based FA2 kernel of
seeds/gqa_naive.py has both; seeds/gqa.py already uses descriptors) and returns None
elsewhere. Q pre-scaled by sm_scale*log2(e) before the loop is not a
recipe: rounding the scaled Q to fp16/bf16 fails the evaluator's large-row inputs
(knowledge/structural-recipes.md).
"""

from __future__ import annotations

import ast

from evolve.operators.config_edit import splice
from evolve.operators.transform import (
    Recipe,
    assigns,
    calls_named,
    indent_of,
    insert_lines,
    jit_functions,
    launches,
    param_names,
    segment,
)


# --- device-side TMA descriptors --------------------------------------------------------

_WORKSPACE = '''def _tma_workspace(size: int, alignment: int, stream):
    """Global memory for descriptors made inside the kernel (tl.make_tensor_descriptor)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


'''


def _with_allocator(source: str, realign: tuple[str, ...] = ()) -> str | None:
    """Install `triton.set_allocator` (GPU only) before the host function's first
    top-level statement that launches a kernel, once per file; there too, the host
    tensors named in `realign` are copied when a descriptor could not take them (a base
    or a stride that is not a multiple of 16 bytes)."""
    if "set_allocator" in source and not realign:
        return source
    tree = ast.parse(source)
    calls = launches(tree)
    host = [f for f in tree.body if isinstance(f, ast.FunctionDef)
            and any(f.lineno <= c.lineno <= f.end_lineno for c in calls)]
    if len(host) != 1 or not host[0].args.args:
        return None
    fn = host[0]
    stmt = next(s for s in fn.body if any(s.lineno <= c.lineno <= s.end_lineno for c in calls))
    ind = indent_of(source, stmt)
    q = fn.args.args[0].arg
    if realign:
        names = ", ".join(realign) + ("," if len(realign) == 1 else "")
        pad = " " * (len(names) + 4)
        # once the tensors are final, before anything reads their strides: after the last
        # statement (before the launch) that assigns one, else first in the body
        before = fn.body[:fn.body.index(stmt)]
        sets = [s for s in before if any(isinstance(t, ast.Name) and t.id in realign
                                         for n in ast.walk(s) if isinstance(n, ast.Assign)
                                         for t in ast.walk(n.targets[0]))]
        docstring = isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
        at = sets[-1].end_lineno if sets else (fn.body[0].end_lineno if docstring and len(
            fn.body) > 1 else fn.body[0].lineno - 1)
        source = insert_lines(source, at, [
            f"{ind}# TMA descriptors need 16-byte aligned bases and strides: copy a view "
            f"without them",
            f"{ind}{names} = (t if all(x * t.element_size() % 16 == 0",
            f"{ind}{pad}       for x in (t.storage_offset(), *t.stride()[:-1]))",
            f"{ind}{pad}else t.clone(memory_format=torch.contiguous_format) "
            f"for t in ({names}))"])
        if "set_allocator" in source:
            return source
        return _with_allocator(source)
    src = insert_lines(source, stmt.lineno - 1, [
        f"{ind}if {q}.is_cuda:  # descriptors made in the kernel need a workspace",
        f"{ind}    triton.set_allocator(_tma_workspace)"])
    lines = src.splitlines(keepends=True)
    at = fn.lineno - 1 - len(fn.decorator_list)
    return "".join(lines[:at]) + _WORKSPACE + "".join(lines[at:])


def _pointer_tile(call: ast.AST) -> tuple[str, str, str] | None:
    """(base, row offsets, row stride) of `base + offs[:, None] * stride + offs_d[None, :]`."""
    if not (isinstance(call, ast.BinOp) and isinstance(call.op, ast.Add)
            and isinstance(call.left, ast.BinOp) and isinstance(call.left.op, ast.Add)):
        return None
    base, rows = call.left.left, call.left.right
    if not (isinstance(base, ast.Name) and isinstance(rows, ast.BinOp)
            and isinstance(rows.op, ast.Mult) and isinstance(rows.right, ast.Name)
            and isinstance(rows.left, ast.Subscript) and isinstance(rows.left.value, ast.Name)):
        return None
    return base.id, rows.left.value.id, rows.right.id


def _rows_only(source: str, fn: ast.FunctionDef, call: ast.Call, offs: str, nargs: int) -> bool:
    """The load/store's mask bounds the rows at S and nothing else (`offs[:, None] < S`,
    inline or through one assignment), and a load pads with zeros: what a descriptor
    does. A mask on the head dim (a padded HEAD_DIM) is not."""
    kw = {k.arg: k.value for k in call.keywords}
    mask = kw.get("mask")
    if len(call.args) != nargs or mask is None:
        return False
    if isinstance(mask, ast.Name):
        defs = assigns(fn, mask.id)
        if len(defs) != 1:
            return False
        mask = defs[0].value
    other = kw.get("other")
    return segment(source, mask).replace(" ", "") == f"{offs}[:,None]<S" and (
        other is None or (isinstance(other, ast.Constant) and other.value == 0))


def _tma_load_kv(source: str) -> str | None:
    """K/V tiles loaded through descriptors made once per program (zero-padded past S)."""
    tree = ast.parse(source)
    jits = jit_functions(tree)
    for name, fn in jits.items():
        loops = [n for n in ast.walk(fn) if isinstance(n, ast.For)]
        if len(loops) != 1 or not isinstance(loops[0].target, ast.Name):
            continue
        start = loops[0].target.id
        params = param_names(fn)
        loads = []
        for a in ast.walk(loops[0]):
            if isinstance(a, ast.Assign) and isinstance(a.value, ast.Call) \
                    and isinstance(a.value.func, ast.Attribute) and a.value.func.attr == "load" \
                    and a.value.args and (pt := _pointer_tile(a.value.args[0])) \
                    and pt[0] in params and pt[2] in params \
                    and _rows_only(source, fn, a.value, pt[1], 1):
                offs = assigns(loops[0], pt[1])
                if len(offs) == 1 and segment(source, offs[0].value).startswith(f"{start} + "):
                    loads.append((a, pt))
        if len(loads) != 2:
            continue
        callers = [(g, c) for g in jits.values() if g is not fn for c in calls_named(g, name)]
        if not callers or len({id(g) for g, _ in callers}) != 1 \
                or any(len(c.args) != len(params) for _, c in callers):
            continue
        g = callers[0][0]
        if not {"S", "HEAD_DIM", "BLOCK_N"} <= set(param_names(g)) or "S" not in params \
                or any(segment(source, c.args[params.index("S")]) != "S" for _, c in callers):
            continue  # the descriptor's S (the caller's) must be the S the masks use
        edits, made = [], []
        for a, (base, _, stride) in loads:
            edits.append((a.value, f"{base}.load([{start}, 0])"))
            passed = {(segment(source, c.args[params.index(base)]),
                       segment(source, c.args[params.index(stride)])) for _, c in callers}
            if len(passed) != 1 or not all(x.isidentifier() for x in next(iter(passed))):
                break
            b, st = next(iter(passed))
            made.append((b, f"desc_{b.removesuffix('_base')}", st))
            edits += [(c.args[params.index(base)], made[-1][1]) for _, c in callers]
        else:
            defs = [d for b, _, _ in made for d in assigns(g, b)]
            if len(defs) != len(made):
                continue
            # the host tensors behind the bases (`k_base = K + ...`, K launched as `k`)
            tensors = [_leftmost_name(d.value) for d in defs]
            glaunch = [c for c in launches(tree) if c.func.value.id == g.name]
            gparams = param_names(g)
            if len(glaunch) != 1 or not all(t in gparams[:len(glaunch[0].args)] for t in tensors):
                continue
            host_args = [segment(source, glaunch[0].args[gparams.index(t)]) for t in tensors]
            if not all(a.isidentifier() for a in host_args):
                continue
            src = splice(source, edits)
            last = max(d.end_lineno for d in defs)
            ind = indent_of(source, defs[0])
            new = [f"{ind}# K/V through TMA descriptors: rows past S come back as zeros"]
            for b, d, s in made:
                new.append(f"{ind}{d} = tl.make_tensor_descriptor({b}, shape=[S, HEAD_DIM], "
                           f"strides=[{s}, 1],")
                new.append(f"{ind}{' ' * (len(d) + 29)}block_shape=[BLOCK_N, HEAD_DIM])")
            return _with_allocator(insert_lines(src, last, new), tuple(dict.fromkeys(host_args)))
    return None


def _leftmost_name(expr: ast.AST) -> str | None:
    """`K` of `K + a * b + c`."""
    while isinstance(expr, ast.BinOp):
        expr = expr.left
    return expr.id if isinstance(expr, ast.Name) else None


def _tma_store_o(source: str) -> str | None:
    """The output tile written through a descriptor (clipped at S) instead of masked stores."""
    tree = ast.parse(source)
    for fn in jit_functions(tree).values():
        if not {"S", "HEAD_DIM", "BLOCK_M"} <= set(param_names(fn)):
            continue
        stores = [s for s in fn.body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                  and isinstance(s.value.func, ast.Attribute) and s.value.func.attr == "store"
                  and isinstance(s.value.func.value, ast.Name) and s.value.func.value.id == "tl"]
        if len(stores) != 1 or len(stores[0].value.args) < 2:
            continue
        stmt = stores[0]
        pt = _pointer_tile(stmt.value.args[0])
        if pt is None or len(assigns(fn, pt[0])) != 1 or len(assigns(fn, pt[1])) != 1 \
                or not _rows_only(source, fn, stmt.value, pt[1], 2):
            continue
        offs = assigns(fn, pt[1])[0].value
        if not (isinstance(offs, ast.BinOp) and isinstance(offs.op, ast.Add)):
            continue
        row0 = segment(source, offs.left)
        ind = indent_of(source, stmt)
        value = segment(source, stmt.value.args[1])
        new = [f"{ind}# O through a TMA descriptor: rows past S are clipped by the hardware",
               f"{ind}o_desc = tl.make_tensor_descriptor({pt[0]}, shape=[S, HEAD_DIM], "
               f"strides=[{pt[2]}, 1],",
               f"{ind}{' ' * 35}block_shape=[BLOCK_M, HEAD_DIM])",
               f"{ind}o_desc.store([{row0}, 0], {value})"]
        lines = source.splitlines(keepends=True)
        src = "".join(lines[:stmt.lineno - 1] + [ln + "\n" for ln in new] + lines[stmt.end_lineno:])
        return _with_allocator(src)
    return None


MEMORY_RECIPES: tuple[Recipe, ...] = (
    Recipe("tma_load_kv",
           "load K/V tiles through device-side TMA descriptors (tl.make_tensor_descriptor): "
           "one bulk copy per tile, no address arithmetic or masks, zero padding past S",
           _tma_load_kv),
    Recipe("tma_store_o",
           "store the output tile through a TMA descriptor: one bulk store, clipped at S "
           "by the hardware instead of a masked pointer store", _tma_store_o),
)
