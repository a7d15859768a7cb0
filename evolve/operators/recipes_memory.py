"""Memory recipes: TMA descriptors for the K/V loads and the O store, made in every
program (`tma_load_kv`, `tma_store_o`) or once on the host (`host_tma_kv`, `host_tma_o`,
`host_tma_q`).

Each applies only where its pattern is present (the pointer-based FA2 kernel of
seeds/gqa_naive.py has both; seeds/gqa.py already uses host descriptors) and returns
None elsewhere. Q pre-scaled by sm_scale*log2(e) before the loop is not a
recipe: rounding the scaled Q to fp16/bf16 fails the evaluator's large-row inputs
(knowledge/structural-recipes.md).
"""

from __future__ import annotations

import ast
import re
from typing import Callable

from evolve.operators.config_edit import splice
from evolve.operators.transform import (
    Recipe,
    add_keyword,
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


def _launcher(tree: ast.Module) -> ast.FunctionDef | None:
    """The module's one host function that launches a @jit kernel (None: none or several)."""
    calls = launches(tree)
    host = [f for f in tree.body if isinstance(f, ast.FunctionDef)
            and any(f.lineno <= c.lineno <= f.end_lineno for c in calls)]
    return host[0] if len(host) == 1 else None


def _with_allocator(source: str, realign: tuple[str, ...] = ()) -> str | None:
    """Install `triton.set_allocator` (GPU only) before the host function's first
    top-level statement that launches a kernel, once per file; there too, the host
    tensors named in `realign` are copied when a descriptor could not take them (a base
    or a stride that is not a multiple of 16 bytes)."""
    if "set_allocator" in source and not realign:
        return source
    tree = ast.parse(source)
    calls = launches(tree)
    fn = _launcher(tree)
    if fn is None or not fn.args.args:
        return None
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
            last = max(defs, key=lambda d: d.end_lineno)
            ind = indent_of(source, defs[0])
            new = [f"{ind}# K/V through TMA descriptors: rows past S come back as zeros"]
            for b, d, s in made:
                new.append(f"{ind}{d} = tl.make_tensor_descriptor({b}, shape=[S, HEAD_DIM], "
                           f"strides=[{s}, 1],")
                new.append(f"{ind}{' ' * (len(d) + 29)}block_shape=[BLOCK_N, HEAD_DIM])")
            # one splice: line numbers of the original would drift after the load edits
            edits.append((last, segment(source, last) + "\n" + "\n".join(new)))
            return _with_allocator(splice(source, edits), tuple(dict.fromkeys(host_args)))
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


# --- host-side TMA descriptors ---------------------------------------------------------

_ROWS_DESC = '''def _rows_desc(t, block_rows: int, head_dim: int):
    """A TMA descriptor made once on the host over the rows of t's [B*H*S, D] view."""
    return TensorDescriptor.from_tensor(t.view(-1, t.shape[-1]), [block_rows, head_dim])


'''
_DESC_IMPORT = "from triton.tools.tensor_descriptor import TensorDescriptor\n"


def _names(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def _device_descs(source: str, g: ast.FunctionDef) -> list[tuple[ast.Assign, ast.Assign, str]]:
    """(descriptor statement, base statement, kernel parameter) of each K/V descriptor that
    `g` makes per program over one head (`d = tl.make_tensor_descriptor(b, shape=[S,
    HEAD_DIM], strides=[st, 1], block_shape=[BLOCK_N, HEAD_DIM])` with `b = T + offset`,
    T a parameter used nowhere else, b used nowhere else): what tma_load_kv writes."""
    found = []
    params = param_names(g)
    for a in [n for n in ast.walk(g) if isinstance(n, ast.Assign) and len(n.targets) == 1
              and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Call)
              and segment(source, n.value.func) == "tl.make_tensor_descriptor"]:
        call = a.value
        kw = {k.arg: segment(source, k.value).replace(" ", "") for k in call.keywords}
        if len(call.args) != 1 or not isinstance(call.args[0], ast.Name) \
                or kw.get("shape") != "[S,HEAD_DIM]" or kw.get("block_shape") != "[BLOCK_N,HEAD_DIM]" \
                or not re.fullmatch(r"\[\w+,1\]", kw.get("strides", "")):
            continue
        base = call.args[0].id
        defs = assigns(g, base)
        if len(defs) != 1 or _names(g).count(base) != 2:
            continue
        t = _leftmost_name(defs[0].value)
        if t not in params or _names(g).count(t) != 1 or _offset(source, defs[0].value) is None:
            continue
        found.append((a, defs[0], t))
    return found


def _offset(source: str, expr: ast.AST) -> str | None:
    """`a * b + c` of `T + a * b + c` (a chain of additions on a name), else None."""
    spine = expr
    while isinstance(spine, ast.BinOp) and isinstance(spine.op, ast.Add):
        spine = spine.left
    if spine is expr or not isinstance(spine, ast.Name):
        return None
    return segment(source, expr)[len(spine.id):].lstrip().removeprefix("+").strip()


def _host_tma_kv(source: str) -> str | None:
    """K/V descriptors made once on the host (kernel arguments) instead of in every program:
    each program reads its head's rows of a [B*Hkv*S, D] view at a row offset. Pointer
    loads of K/V (the pattern of `tma_load_kv`) get there in one step, through the device
    descriptors `tma_load_kv` writes: alone that step measured nothing (-0.1 % on
    seeds/gqa_naive.py), so a search that must pick it first rarely reached the host
    descriptors (H100, 20-minute naive run: never; benchmarks/results/2026-12-07-h100-session11/)."""
    return _host_step(source, _host_from_device, _tma_load_kv)


def _host_step(source: str, host: Callable[[str], str | None],
               device: Callable[[str], str | None]) -> str | None:
    """`host` (device descriptors -> host ones) on `source`, else on what `device`
    (pointers -> device descriptors) makes of it: pointers to host descriptors in one step."""
    out = host(source)
    if out is None and (made := device(source)) is not None:
        out = host(made)
    return out


def _host_from_device(source: str) -> str | None:
    """`_host_tma_kv` on a kernel that makes its K/V descriptors per program."""
    tree = ast.parse(source)
    jits = jit_functions(tree)
    for g in jits.values():
        descs = _device_descs(source, g)
        glaunch = [c for c in launches(tree) if c.func.value.id == g.name]
        gparams = param_names(g)
        if len(descs) != 2 or len(glaunch) != 1 \
                or any(gparams.index(t) >= len(glaunch[0].args) for _, _, t in descs):
            continue
        launch = glaunch[0]
        kws = {k.arg: segment(source, k.value) for k in launch.keywords}
        hosts = [launch.args[gparams.index(t)] for _, _, t in descs]
        if not {"BLOCK_N", "HEAD_DIM"} <= set(kws) \
                or not all(isinstance(h, ast.Name) for h in hosts):
            continue
        edits: list[tuple[ast.AST, str]] = []
        rows: dict[str, str] = {}  # descriptor name in g -> its row-offset name
        for (a, base, t), host in zip(descs, hosts):
            d = a.targets[0].id
            stride = a.value.keywords[[k.arg for k in a.value.keywords].index("strides")].value
            stride = segment(source, stride.elts[0])
            offset = _offset(source, base.value)
            ind = indent_of(source, base)
            note = "" if rows else \
                f"# the head's first row in the [B*H*S, D] view (contiguous K/V)\n{ind}"
            edits.append((base, f"{note}{d}_row = (({offset})\n"
                                f"{ind}{' ' * (len(d) + 8)}// {stride}).to(tl.int32)"))
            rows[d] = f"{d}_row"
            edits.append((a, f"{d} = {t}  # a host descriptor over the rows of [B*H*S, HEAD_DIM]"))
            edits.append((host, f"_rows_desc({host.id}, {kws['BLOCK_N']}, {kws['HEAD_DIM']})"))
        # every use of a descriptor: loads in g, or passed to a @jit callee that loads
        uses = [n for n in ast.walk(g) if isinstance(n, ast.Name) and n.id in rows
                and isinstance(n.ctx, ast.Load)]
        loads = [c for c in ast.walk(g) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Attribute) and c.func.attr == "load"
                 and isinstance(c.func.value, ast.Name) and c.func.value.id in rows]
        calls = [c for c in ast.walk(g) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Name) and c.func.id in jits
                 and any(isinstance(x, ast.Name) and x.id in rows for x in c.args)]
        if len(uses) != len(loads) + sum(
                sum(isinstance(x, ast.Name) and x.id in rows for x in c.args) for c in calls):
            continue
        ok = True
        for c in loads:
            ok &= _row_shift(source, c, rows[c.func.value.id], edits)
        for name in {c.func.id for c in calls}:
            mine = [c for c in calls if c.func.id == name]
            everywhere = [c for fn in jits.values() for c in calls_named(fn, name)]
            # a callee called from elsewhere too would lose its other callers' arguments
            ok &= jits[name] is not g and len(everywhere) == len(mine) \
                and _thread_rows(source, jits[name], mine, rows, edits)
        if not ok:
            continue
        src = splice(source, edits)
        return _host_rows(src, [h.id for h in hosts])
    return None


def _thread_rows(source: str, f: ast.FunctionDef, calls: list[ast.Call], rows: dict[str, str],
                 edits: list) -> bool:
    """The callee `f` that the kernel passes descriptors to: one row-offset parameter per
    descriptor slot, passed by every call, added to every load's row (False: another form)."""
    fparams = param_names(f)
    if any(len(c.args) != len(fparams) or c.keywords for c in calls):
        return False
    slots = sorted({i for c in calls for i, x in enumerate(c.args)
                    if isinstance(x, ast.Name) and x.id in rows})
    if any(not (isinstance(c.args[i], ast.Name) and c.args[i].id in rows)
           for c in calls for i in slots):
        return False
    edits.append(_append(source, f.args.args[-1], ", ".join(f"{fparams[i]}_row0" for i in slots),
                         f.args.args[0].col_offset))
    for c in calls:
        extra = ", ".join(rows[c.args[i].id] for i in slots)
        edits.append(_append(source, c.args[-1], extra, c.args[0].col_offset))
    ok = True
    for i in slots:
        p = fparams[i]
        loads = [x for x in ast.walk(f) if isinstance(x, ast.Call)
                 and isinstance(x.func, ast.Attribute) and x.func.attr == "load"
                 and isinstance(x.func.value, ast.Name) and x.func.value.id == p]
        ok &= bool(loads) and _names(f).count(p) == len(loads)
        for x in loads:
            ok &= _row_shift(source, x, f"{p}_row0", edits)
    return ok


def _append(source: str, node: ast.AST, extra: str, align: int,
            width: int = 96) -> tuple[ast.AST, str]:
    """The edit that appends `, extra` after `node` (an argument or parameter), on a new
    line aligned at column `align` when the line would be longer than `width`."""
    text = segment(source, node)
    line = source.splitlines()[node.end_lineno - 1]
    if len(line) + len(extra) + 2 > width:
        return node, f"{text},\n{' ' * align}{extra}"
    return node, f"{text}, {extra}"


def _row_shift(source: str, load: ast.Call, row: str, edits: list) -> bool:
    """`desc.load([r, c])` -> `desc.load([row + r, c])`; False for any other form."""
    if len(load.args) != 1 or not isinstance(load.args[0], ast.List) \
            or len(load.args[0].elts) != 2 or load.keywords:
        return False
    first = load.args[0].elts[0]
    edits.append((first, f"{row} + {segment(source, first)}"))
    return True


def _host_rows(source: str, tensors: list[str]) -> str | None:
    """The import, `_rows_desc`, and the host tensors made contiguous (their rows are
    addressed as one [B*H*S, D] view) right after their last assignment before the
    launch (tma_load_kv's realignment; None where nothing assigns them)."""
    src = _contiguous_before_launch(source, tensors,
                                    "host descriptors address the rows of a [B*H*S, D] view")
    return None if src is None else _with_helper(src, _ROWS_DESC)


def _contiguous_before_launch(source: str, tensors: list[str], why: str) -> str | None:
    """The host tensors `tensors` made contiguous right after their last assignment before
    the launch, under the comment `why` (None where nothing assigns them)."""
    tree = ast.parse(source)
    calls = launches(tree)
    fn = _launcher(tree)
    if fn is None:
        return None
    stmt = next(s for s in fn.body if any(s.lineno <= c.lineno <= s.end_lineno for c in calls))
    before = fn.body[:fn.body.index(stmt)]
    names = list(dict.fromkeys(tensors))
    sets = [s for s in before if any(isinstance(t, ast.Name) and t.id in names
                                     for n in ast.walk(s) if isinstance(n, ast.Assign)
                                     for t in ast.walk(n.targets[0]))]
    if not sets:
        return None
    ind = indent_of(source, stmt)
    tup = ", ".join(names)
    made = f"{tup}.contiguous()" if len(names) == 1 else f"(t.contiguous() for t in ({tup}))"
    return insert_lines(source, sets[-1].end_lineno, [f"{ind}# {why}", f"{ind}{tup} = {made}"])


# --- the O store through a host descriptor ------------------------------------------------

_HEADS_DESC = '''def _heads_desc(t, block_rows: int, head_dim: int):
    """A TMA descriptor made once on the host over t's [B*H, S, D] view (t contiguous):
    a tile ends at its own head's last row (a store is clipped there, a load zero-filled)."""
    if not t.is_contiguous():
        raise ValueError("a tensor behind a [B*H, S, D] host descriptor must be contiguous")
    return TensorDescriptor.from_tensor(t.view(-1, t.shape[-2], t.shape[-1]),
                                        [1, block_rows, head_dim])


'''


def _host_tma_o(source: str) -> str | None:
    """The output tile stored through a descriptor made once on the host over the
    contiguous output's [B*Hq, S, D] view (a new kernel argument `desc_o`) instead of one
    made in every program; the program stores at [its head, its first row, 0]. A masked
    pointer store of O (`tma_store_o`'s pattern) gets there through `tma_store_o`."""
    return _host_step(source, _host_o_from_device, _tma_store_o)


def _host_o_from_device(source: str) -> str | None:
    """`_host_tma_o` on a kernel that makes its O descriptor per program."""
    tree = ast.parse(source)
    for g in jit_functions(tree).values():
        params = param_names(g)
        if "desc_o" in params or not {"S", "HEAD_DIM", "BLOCK_M"} <= set(params):
            continue
        made = [a for a in ast.walk(g) if isinstance(a, ast.Assign) and len(a.targets) == 1
                and isinstance(a.targets[0], ast.Name) and isinstance(a.value, ast.Call)
                and segment(source, a.value.func) == "tl.make_tensor_descriptor"
                and {k.arg: segment(source, k.value).replace(" ", "")
                     for k in a.value.keywords}.get("block_shape") == "[BLOCK_M,HEAD_DIM]"]
        if len(made) != 1:
            continue
        a = made[0]
        d = a.targets[0].id
        kw = {k.arg: segment(source, k.value).replace(" ", "") for k in a.value.keywords}
        stride = re.fullmatch(r"\[(\w+),1\]", kw.get("strides", ""))
        if kw.get("shape") != "[S,HEAD_DIM]" or stride is None or len(a.value.args) != 1 \
                or not isinstance(a.value.args[0], ast.Name):
            continue
        base = a.value.args[0].id
        defs = assigns(g, base)
        stores = [st for st in g.body if isinstance(st, ast.Expr)
                  and isinstance(st.value, ast.Call)
                  and segment(source, st.value.func) == f"{d}.store"]
        if len(defs) != 1 or _names(g).count(base) != 2 or _names(g).count(d) != 2 \
                or len(stores) != 1:
            continue
        t = _leftmost_name(defs[0].value)
        offset = _offset(source, defs[0].value)
        call = stores[0].value
        if t not in params or offset is None or len(call.args) != 2 or call.keywords \
                or not isinstance(call.args[0], ast.List) or len(call.args[0].elts) != 2 \
                or segment(source, call.args[0].elts[1]) != "0":
            continue
        slot = _launch_slot(source, tree, g, t)
        if slot is None:
            continue
        launch, kws, host = slot
        row = segment(source, call.args[0].elts[0])
        value = segment(source, call.args[1])
        ind = indent_of(source, defs[0])
        edits = [
            (defs[0], f"# the program's head in the output's [B*H, S, D] view (contiguous)\n"
                      f"{ind}o_head = (({offset})\n{ind}          // (S * {stride[1]})).to(tl.int32)"),
            (a, "# desc_o (a kernel argument): made once on the host over the output's "
                "[B*H, S, HEAD_DIM] view"),
            (call, f"desc_o.store([o_head, {row}, 0],\n{indent_of(source, call)}             "
                   + (value if isinstance(call.args[1], (ast.Call, ast.Name)) else f"({value})")
                   + ".reshape(1, BLOCK_M, HEAD_DIM))"),
            (g.args.args[-1], f"{segment(source, g.args.args[-1])}, desc_o"),
            add_keyword(source, launch, f"desc_o=_heads_desc({host.id}, {kws['BLOCK_M']}, "
                                           f"{kws['HEAD_DIM']})"),
        ]
        src = splice(source, edits)
        return _with_helper(src, _HEADS_DESC)
    return None


def _launch_slot(source: str, tree: ast.Module, g: ast.FunctionDef, param: str
                 ) -> tuple[ast.Call, dict[str, str], ast.Name] | None:
    """(the one launch of kernel `g`, its keywords' text, the host tensor it passes
    positionally for `param`) where that launch sets BLOCK_M and HEAD_DIM by keyword."""
    launch = [c for c in launches(tree) if c.func.value.id == g.name]
    params = param_names(g)
    if len(launch) != 1 or params.index(param) >= len(launch[0].args):
        return None
    kws = {k.arg: segment(source, k.value) for k in launch[0].keywords}
    host = launch[0].args[params.index(param)]
    if not {"BLOCK_M", "HEAD_DIM"} <= set(kws) or not isinstance(host, ast.Name):
        return None
    return launch[0], kws, host


def _with_helper(source: str, helper: str) -> str | None:
    """`helper` (a function's text) placed before the host function that launches a
    kernel, unless the module has it already, and the TensorDescriptor import (None: no
    such host function or import line)."""
    fn = _launcher(ast.parse(source))
    if fn is None:
        return None
    lines = source.splitlines(keepends=True)
    at = fn.lineno - 1 - len(fn.decorator_list)
    have = helper.split("(", 1)[0] + "(" in source  # "def _heads_desc(" already there
    src = source if have else "".join(lines[:at]) + helper + "".join(lines[at:])
    if _DESC_IMPORT not in src:
        m = re.search(r"^import triton\.language as tl\n", src, re.M)
        if m is None:
            return None
        src = src[:m.end()] + _DESC_IMPORT + src[m.end():]
    return src


# --- the Q load through a host descriptor -------------------------------------------------

def _host_tma_q(source: str) -> str | None:
    """The query tile loaded through a descriptor made once on the host over the contiguous
    q's [B*Hq, S, D] view (a new kernel argument `desc_q`; rows past S come back as zeros)
    instead of a masked pointer load with its address arithmetic; the host makes q
    contiguous first. The pattern: one `q = tl.load(q_base + offs_m[:, None] * stride +
    offs_d[None, :], mask=offs_m[:, None] < S, other=0)` in the kernel body, `offs_m = row0
    + tl.arange(0, BLOCK_M)`, `q_base = Q + offset` used for nothing else."""
    tree = ast.parse(source)
    for g in jit_functions(tree).values():
        params = param_names(g)
        if "desc_q" in params or not {"S", "HEAD_DIM", "BLOCK_M"} <= set(params):
            continue
        loads = [a for a in g.body if isinstance(a, ast.Assign) and len(a.targets) == 1
                 and isinstance(a.targets[0], ast.Name) and isinstance(a.value, ast.Call)
                 and segment(source, a.value.func) == "tl.load" and a.value.args
                 and (pt := _pointer_tile(a.value.args[0])) is not None
                 and _rows_only(source, g, a.value, pt[1], 1)]
        if len(loads) != 1:
            continue
        a = loads[0]
        base, offs, stride = _pointer_tile(a.value.args[0])
        defs, odefs = assigns(g, base), assigns(g, offs)
        if len(defs) != 1 or len(odefs) != 1 or _names(g).count(base) != 2:
            continue
        t, offset = _leftmost_name(defs[0].value), _offset(source, defs[0].value)
        rows = odefs[0].value
        if t not in params or _names(g).count(t) != 1 or offset is None \
                or not (isinstance(rows, ast.BinOp) and isinstance(rows.op, ast.Add)) \
                or segment(source, rows.right).replace(" ", "") != "tl.arange(0,BLOCK_M)":
            continue
        slot = _launch_slot(source, tree, g, t)
        if slot is None:
            continue
        launch, kws, host = slot
        ind = indent_of(source, defs[0])
        edits = [
            (defs[0], f"# the program's head in q's [B*H, S, D] view (contiguous)\n"
                      f"{ind}q_head = (({offset})\n{ind}          // (S * {stride})).to(tl.int32)"),
            (a.value, f"desc_q.load([q_head, {segment(source, rows.left)}, 0])"
                      ".reshape(BLOCK_M, HEAD_DIM)"),
            (g.args.args[-1], f"{segment(source, g.args.args[-1])}, desc_q"),
            add_keyword(source, launch, f"desc_q=_heads_desc({host.id}, {kws['BLOCK_M']}, "
                                           f"{kws['HEAD_DIM']})"),
        ]
        src = _contiguous_before_launch(splice(source, edits), [host.id],
                                        "the Q descriptor addresses q's [B*H, S, D] view")
        return None if src is None else _with_helper(src, _HEADS_DESC)
    return None


MEMORY_RECIPES: tuple[Recipe, ...] = (
    Recipe("tma_load_kv",
           "load K/V tiles through device-side TMA descriptors (tl.make_tensor_descriptor): "
           "one bulk copy per tile, no address arithmetic or masks, zero padding past S",
           _tma_load_kv),
    Recipe("tma_store_o",
           "store the output tile through a TMA descriptor: one bulk store, clipped at S "
           "by the hardware instead of a masked pointer store", _tma_store_o,
           paid={"gqa": 0.046}),
    # paid: against the gqa_naive stack of six recipes (tma_load_kv among them), one round
    Recipe("host_tma_kv",
           "load K/V through TMA descriptors made once on the host (kernel arguments over "
           "the rows of a [B*H*S, D] view) instead of pointer loads or descriptors made in "
           "every program: one bulk copy per tile, no per-program descriptor setup",
           _host_tma_kv, paid={"gqa": 0.035}),
    Recipe("host_tma_o",
           "store O through a TMA descriptor made once on the host over the output's "
           "[B*H, S, D] view instead of one made in every program (per-program descriptor "
           "setup weighs most at short sequences)", _host_tma_o),
    Recipe("host_tma_q",
           "load the query tile through a TMA descriptor made once on the host over q's "
           "[B*H, S, D] view instead of a masked pointer load (no per-element address "
           "arithmetic: 16 loads and their int64 offsets per thread at 128x128)", _host_tma_q),
)
