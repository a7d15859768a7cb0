"""Memory and schedule recipes: device-side TMA descriptors for the K/V loads and the O
store, a persistent grid walking causal tiles longest first.

Each applies only where its pattern is present (the pointer-based FA2 kernel of
seeds/gqa_naive.py has all three; seeds/gqa.py already has descriptors and a 1-D grid)
and returns None elsewhere. Q pre-scaled by sm_scale*log2(e) before the loop is not a
recipe: rounding the scaled Q to fp16/bf16 fails the evaluator's large-row inputs
(knowledge/structural-recipes.md).
"""

from __future__ import annotations

import ast

from evolve.operators.config_edit import splice
from evolve.operators.transform import (
    Recipe,
    indent_of,
    insert_lines,
    jit_functions,
    launches,
)


def _calls(fn: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id == name]


def _assigns(fn: ast.AST, name: str) -> list[ast.Assign]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name) and n.targets[0].id == name]


def _seg(source: str, node: ast.AST) -> str:
    text = ast.get_source_segment(source, node)
    if text is None:
        raise ValueError("no source segment")
    return text


def _params(fn: ast.FunctionDef) -> list[str]:
    return [a.arg for a in fn.args.args]


# --- device-side TMA descriptors --------------------------------------------------------

_WORKSPACE = '''def _tma_workspace(size: int, alignment: int, stream):
    """Global memory for descriptors made inside the kernel (tl.make_tensor_descriptor)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


'''


def _with_allocator(source: str) -> str | None:
    """Install `triton.set_allocator` (GPU only) before the host function's first
    top-level statement that launches a kernel, once per file."""
    if "set_allocator" in source:
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


def _tma_load_kv(source: str) -> str | None:
    """K/V tiles loaded through descriptors made once per program (zero-padded past S)."""
    tree = ast.parse(source)
    jits = jit_functions(tree)
    for name, fn in jits.items():
        loops = [n for n in ast.walk(fn) if isinstance(n, ast.For)]
        if len(loops) != 1 or not isinstance(loops[0].target, ast.Name):
            continue
        start = loops[0].target.id
        params = _params(fn)
        loads = []
        for a in ast.walk(loops[0]):
            if isinstance(a, ast.Assign) and isinstance(a.value, ast.Call) \
                    and isinstance(a.value.func, ast.Attribute) and a.value.func.attr == "load" \
                    and a.value.args and (pt := _pointer_tile(a.value.args[0])) \
                    and pt[0] in params and pt[2] in params:
                offs = _assigns(loops[0], pt[1])
                if len(offs) == 1 and _seg(source, offs[0].value).startswith(f"{start} + "):
                    loads.append((a, pt))
        if len(loads) != 2:
            continue
        callers = [(g, c) for g in jits.values() if g is not fn for c in _calls(g, name)]
        if not callers or len({id(g) for g, _ in callers}) != 1 \
                or any(len(c.args) != len(params) for _, c in callers):
            continue
        g = callers[0][0]
        if not {"S", "HEAD_DIM", "BLOCK_N"} <= set(_params(g)):
            continue
        edits, made = [], []
        for a, (base, _, stride) in loads:
            edits.append((a.value, f"{base}.load([{start}, 0])"))
            passed = {(_seg(source, c.args[params.index(base)]),
                       _seg(source, c.args[params.index(stride)])) for _, c in callers}
            if len(passed) != 1 or not all(x.isidentifier() for x in next(iter(passed))):
                break
            b, st = next(iter(passed))
            made.append((b, f"desc_{b.removesuffix('_base')}", st))
            edits += [(c.args[params.index(base)], made[-1][1]) for _, c in callers]
        else:
            defs = [d for b, _, _ in made for d in _assigns(g, b)]
            if len(defs) != len(made):
                continue
            src = splice(source, edits)
            last = max(d.end_lineno for d in defs)
            ind = indent_of(source, defs[0])
            new = [f"{ind}# K/V through TMA descriptors: rows past S come back as zeros"]
            for b, d, s in made:
                new.append(f"{ind}{d} = tl.make_tensor_descriptor({b}, shape=[S, HEAD_DIM], "
                           f"strides=[{s}, 1],")
                new.append(f"{ind}{' ' * (len(d) + 29)}block_shape=[BLOCK_N, HEAD_DIM])")
            return _with_allocator(insert_lines(src, last, new))
    return None


def _tma_store_o(source: str) -> str | None:
    """The output tile written through a descriptor (clipped at S) instead of masked stores."""
    tree = ast.parse(source)
    for fn in jit_functions(tree).values():
        if not {"S", "HEAD_DIM", "BLOCK_M"} <= set(_params(fn)):
            continue
        stores = [s for s in fn.body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                  and isinstance(s.value.func, ast.Attribute) and s.value.func.attr == "store"
                  and isinstance(s.value.func.value, ast.Name) and s.value.func.value.id == "tl"]
        if len(stores) != 1 or len(stores[0].value.args) < 2:
            continue
        stmt = stores[0]
        pt = _pointer_tile(stmt.value.args[0])
        if pt is None or len(_assigns(fn, pt[0])) != 1 or len(_assigns(fn, pt[1])) != 1:
            continue
        offs = _assigns(fn, pt[1])[0].value
        if not (isinstance(offs, ast.BinOp) and isinstance(offs.op, ast.Add)):
            continue
        row0 = _seg(source, offs.left)
        ind = indent_of(source, stmt)
        value = _seg(source, stmt.value.args[1])
        new = [f"{ind}# O through a TMA descriptor: rows past S are clipped by the hardware",
               f"{ind}o_desc = tl.make_tensor_descriptor({pt[0]}, shape=[S, HEAD_DIM], "
               f"strides=[{pt[2]}, 1],",
               f"{ind}{' ' * 35}block_shape=[BLOCK_M, HEAD_DIM])",
               f"{ind}o_desc.store([{row0}, 0], {value})"]
        lines = source.splitlines(keepends=True)
        src = "".join(lines[:stmt.lineno - 1] + [ln + "\n" for ln in new] + lines[stmt.end_lineno:])
        return _with_allocator(src)
    return None


# --- persistent_lpt --------------------------------------------------------------------

_PROGRAMS = '''def _persistent_programs(t) -> int:
    """Programs of the persistent launch: two per SM (a few off the GPU)."""
    if not t.is_cuda:
        return 4
    return 2 * torch.cuda.get_device_properties(t.device).multi_processor_count


'''


def _persistent_lpt(source: str) -> str | None:
    """A persistent grid over the kernel's tiles, longest causal rows first: from a 2-D
    grid (head, query block), or from a 1-D one (`_persistent_1d`)."""
    return _persistent_2d(source) or _persistent_1d(source)


def _runtime_params(source: str, fn: ast.FunctionDef) -> list[ast.arg] | None:
    """The non-constexpr parameters, when they all come before the constexpr ones."""
    runtime = [a for a in fn.args.args if not (a.annotation is not None
                                               and "constexpr" in _seg(source, a.annotation))]
    return runtime if fn.args.args[:len(runtime)] == runtime else None


def _with_programs(out: str, host: str) -> str:
    """`_persistent_programs` defined just before the host function `host`."""
    lines = out.splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.startswith(f"def {host}("))
    return "".join(lines[:at]) + _PROGRAMS + "".join(lines[at:])


def _persistent_1d(source: str) -> str | None:
    """1-D grid (one program per tile, `pid = tl.program_id(0)`) -> persistent programs
    looping over the tiles; with CAUSAL and `num_m` the tiles go query-block-major, so the
    first waves hold every head's first query blocks: its longest rows where the kernel
    reverses the block order (seeds/gqa.py's REVERSE_M, a knob of the tuner)."""
    tree = ast.parse(source)
    for kname, fn in jit_functions(tree).items():
        pid = [(i, st) for i, st in enumerate(fn.body) if isinstance(st, ast.Assign)
               and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name)
               and _seg(source, st.value) == "tl.program_id(0)"]
        names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        runtime = _runtime_params(source, fn)
        if len(pid) != 1 or "tl.program_id(1)" in _seg(source, fn) \
                or "num_programs" in _seg(source, fn) or names & {"N_TILES", "tile"} \
                or not runtime \
                or any(isinstance(n, (ast.Return, ast.For)) and pid[0][1].targets[0].id in
                       {x.id for x in ast.walk(n) if isinstance(x, ast.Name)}
                       for n in ast.walk(fn)):
            continue  # absent, 2-D, or already persistent (the pid starts a loop)
        launch = [c for c in launches(tree) if c.func.value.id == kname]
        if len(launch) != 1 or not isinstance(launch[0].func.slice, ast.Name):
            continue
        call = launch[0]
        constexprs = [a.arg for a in fn.args.args[len(runtime):]]
        if not set(constexprs) <= {k.arg for k in call.keywords} or not call.args:
            continue
        host = next(f for f in tree.body if isinstance(f, ast.FunctionDef)
                    and f.lineno <= call.lineno <= f.end_lineno)
        gdefs = [a for a in _assigns(host, call.func.slice.id) if isinstance(a.value, ast.Tuple)
                 and len(a.value.elts) == 1]
        if len(gdefs) != 1:
            continue
        n_tiles = _seg(source, gdefs[0].value.elts[0])
        i, st = pid[0]
        x = st.targets[0].id
        ind = indent_of(source, st)
        head = [f"{ind}# persistent: program p takes tiles p, p + num_programs, ...",
                f"{ind}for tile in tl.range(tl.program_id(0), N_TILES, tl.num_programs(0)):",
                f"{ind}    {x} = tile"]
        if "CAUSAL" in _params(fn) and any(a.lineno < st.lineno for a in _assigns(fn, "num_m")):
            head += [f"{ind}    if CAUSAL:  # query-block-major: the heads' first query blocks",
                     f"{ind}        # (the longest rows when the kernel reverses them) run first",
                     f"{ind}        {x} = (tile % (N_TILES // num_m)) * num_m "
                     f"+ tile // (N_TILES // num_m)"]
        lines = source.splitlines(keepends=True)
        rest = fn.body[i + 1:]
        if not rest:
            continue
        body = "".join(("    " + ln if ln.strip() else ln)
                       for ln in lines[rest[0].lineno - 1:fn.end_lineno])
        last = runtime[-1]
        sig = lines[last.lineno - 1]
        sig = sig[:last.end_col_offset] + ", N_TILES" + sig[last.end_col_offset:]
        kernel = lines[:st.lineno - 1]
        kernel[last.lineno - 1] = sig
        host_edits = [(call.args[-1], f"{_seg(source, call.args[-1])}, {n_tiles}"),
                      (gdefs[0].value,
                       f"(min({n_tiles}, _persistent_programs({host.args.args[0].arg})),)")]
        out = splice(source, host_edits)  # host code follows the kernel: spans still hold
        out_lines = out.splitlines(keepends=True)
        new = "".join(kernel) + "\n".join(head) + "\n" + body + "".join(out_lines[fn.end_lineno:])
        return _with_programs(new, host.name)
    return None


def _persistent_2d(source: str) -> str | None:
    """2-D grid (head, query block) -> a persistent 1-D grid over the same tiles, longest
    causal rows first."""
    tree = ast.parse(source)
    for kname, fn in jit_functions(tree).items():
        pids = {}
        for i, st in enumerate(fn.body):
            if isinstance(st, ast.Assign) and len(st.targets) == 1 \
                    and isinstance(st.targets[0], ast.Name) and isinstance(st.value, ast.Call) \
                    and _seg(source, st.value) in ("tl.program_id(0)", "tl.program_id(1)"):
                pids[_seg(source, st.value)[-2]] = (i, st)
        params = _params(fn)
        names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        if set(pids) != {"0", "1"} or not {"S", "BLOCK_M"} <= set(params) \
                or names & {"tile", "num_m", "N_BH"} \
                or any(isinstance(n, ast.Return) for n in ast.walk(fn)):
            continue
        runtime = _runtime_params(source, fn)
        if not runtime:
            continue
        launch = [c for c in launches(tree) if c.func.value.id == kname]
        if len(launch) != 1 or len(launch[0].args) != len(runtime) \
                or any(isinstance(a, ast.Starred) for a in launch[0].args):
            continue
        call = launch[0]
        host = next(f for f in tree.body if isinstance(f, ast.FunctionDef)
                    and f.lineno <= call.lineno <= f.end_lineno)
        grid = call.func.slice
        if not isinstance(grid, ast.Name):
            continue
        gdefs = [a for a in _assigns(host, grid.id) if isinstance(a.value, ast.Tuple)
                 and len(a.value.elts) == 2]
        if len(gdefs) != 1:
            continue
        n_bh, n_m = (_seg(source, e) for e in gdefs[0].value.elts)
        q = host.args.args[0].arg
        first = min(i for i, _ in pids.values())
        x, y = pids["0"][1].targets[0].id, pids["1"][1].targets[0].id
        lines = source.splitlines(keepends=True)
        ind = indent_of(source, fn.body[first])
        body = fn.body[first:]
        rest = [st for st in body if st not in (pids["0"][1], pids["1"][1])]
        moved = "".join(("    " + ln if ln.strip() else ln)
                        for ln in lines[rest[0].lineno - 1:fn.end_lineno]) if rest else ""
        head = [f"{ind}# persistent: program p takes tiles p, p + num_programs, ...; tile t is",
                f"{ind}# (head t % N_BH, query block t // N_BH), the last query blocks first when",
                f"{ind}# causal (longest rows first: the tail of the launch is short work)",
                f"{ind}num_m = tl.cdiv(S, BLOCK_M)",
                f"{ind}for tile in tl.range(tl.program_id(0), N_BH * num_m, tl.num_programs(0)):",
                f"{ind}    {x} = tile % N_BH",
                f"{ind}    {y} = tile // N_BH"]
        if "CAUSAL" in params:
            head += [f"{ind}    if CAUSAL:", f"{ind}        {y} = num_m - 1 - {y}"]
        above = [ln for ln in lines[fn.lineno - 1 - len(fn.decorator_list):body[0].lineno - 1]
                 if not (ln.strip().startswith("#") and "axis" in ln)]  # the old grid's axes
        kernel = "".join(above) + "\n".join(head) + "\n" + moved
        # signature: N_BH after the last runtime parameter
        last = runtime[-1]
        sig_lines = kernel.splitlines(keepends=True)
        row = last.lineno - (fn.lineno - len(fn.decorator_list))
        col = last.end_col_offset
        sig_lines[row] = sig_lines[row][:col] + ", N_BH" + sig_lines[row][col:]
        kernel = "".join(sig_lines)
        # host: the launch passes N_BH; the grid is the persistent one
        host_edits = [(call.args[-1], f"{_seg(source, call.args[-1])}, {n_bh}"),
                      (gdefs[0].value, f"(min({n_bh} * {n_m}, _persistent_programs({q})),)")]
        start = fn.lineno - 1 - len(fn.decorator_list)
        out = splice(source, host_edits)  # host code follows the kernel: spans still hold
        out_lines = out.splitlines(keepends=True)
        out = "".join(out_lines[:start]) + kernel + "".join(out_lines[fn.end_lineno:])
        return _with_programs(out, host.name)
    return None


MEMORY_RECIPES: tuple[Recipe, ...] = (
    Recipe("tma_load_kv",
           "load K/V tiles through device-side TMA descriptors (tl.make_tensor_descriptor): "
           "one bulk copy per tile, no address arithmetic or masks, zero padding past S",
           _tma_load_kv),
    Recipe("tma_store_o",
           "store the output tile through a TMA descriptor: one bulk store, clipped at S "
           "by the hardware instead of a masked pointer store", _tma_store_o),
    Recipe("persistent_lpt",
           "persistent grid (two programs per SM looping over tiles) with the longest causal "
           "query blocks first: no launch tail of long programs, one launch's setup "
           "amortised over many tiles", _persistent_lpt),
)
