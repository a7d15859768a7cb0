"""Schedule recipes: a persistent grid that walks the causal tiles longest first.

`persistent_lpt` turns a 2-D grid (heads, query blocks; seeds/gqa_naive.py) or a 1-D
grid with `pid = tl.program_id(0)` (seeds/gqa.py) into persistent programs, two per SM,
looping over the same tiles; None where neither pattern is present (or already
persistent).
"""

from __future__ import annotations

import ast

from evolve.operators.config_edit import splice
from evolve.operators.transform import (
    ON_H100,
    Recipe,
    assigns,
    indent_of,
    jit_functions,
    launches,
    param_names,
    segment,
)


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
                                               and "constexpr" in segment(source, a.annotation))]
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
               and segment(source, st.value) == "tl.program_id(0)"]
        names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        runtime = _runtime_params(source, fn)
        if len(pid) != 1 or "tl.program_id(1)" in segment(source, fn) \
                or "num_programs" in segment(source, fn) or names & {"N_TILES", "tile"} \
                or not runtime or any(isinstance(n, ast.Return) for n in ast.walk(fn)) \
                or any(isinstance(n, ast.For) and pid[0][1].targets[0].id in
                       {x.id for x in ast.walk(n) if isinstance(x, ast.Name)}
                       for n in ast.walk(fn)):
            continue  # absent, 2-D, already persistent (the pid starts a loop), or a
            # `return` (in the tile loop it would end the program's later tiles)
        launch = [c for c in launches(tree) if c.func.value.id == kname]
        if len(launch) != 1 or not isinstance(launch[0].func.slice, ast.Name):
            continue
        call = launch[0]
        constexprs = [a.arg for a in fn.args.args[len(runtime):]]
        if not set(constexprs) <= {k.arg for k in call.keywords} or not call.args:
            continue
        host = next((f for f in tree.body if isinstance(f, ast.FunctionDef)
                     and f.lineno <= call.lineno <= f.end_lineno), None)
        if host is None:
            continue  # launched from a method or nested function
        gdefs = [a for a in assigns(host, call.func.slice.id) if isinstance(a.value, ast.Tuple)
                 and len(a.value.elts) == 1]
        if len(gdefs) != 1:
            continue
        n_tiles = segment(source, gdefs[0].value.elts[0])
        i, st = pid[0]
        x = st.targets[0].id
        ind = indent_of(source, st)
        head = [f"{ind}# persistent: program p takes tiles p, p + num_programs, ...",
                f"{ind}for tile in tl.range(tl.program_id(0), N_TILES, tl.num_programs(0)):",
                f"{ind}    {x} = tile"]
        if "CAUSAL" in param_names(fn) and any(a.lineno < st.lineno for a in assigns(fn, "num_m")):
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
        host_edits = [(call.args[-1], f"{segment(source, call.args[-1])}, {n_tiles}"),
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
                    and segment(source, st.value) in ("tl.program_id(0)", "tl.program_id(1)"):
                pids[segment(source, st.value)[-2]] = (i, st)
        params = param_names(fn)
        names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        if set(pids) != {"0", "1"} or not {"S", "BLOCK_M"} <= set(params) \
                or names & {"tile", "num_m", "N_BH", "N_M"} \
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
        host = next((f for f in tree.body if isinstance(f, ast.FunctionDef)
                     and f.lineno <= call.lineno <= f.end_lineno), None)
        if host is None:
            continue  # launched from a method or nested function
        grid = call.func.slice
        if not isinstance(grid, ast.Name):
            continue
        gdefs = [a for a in assigns(host, grid.id) if isinstance(a.value, ast.Tuple)
                 and len(a.value.elts) == 2]
        if len(gdefs) != 1:
            continue
        n_bh, n_m = (segment(source, e) for e in gdefs[0].value.elts)
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
                f"{ind}# (N_BH, N_M: the old grid, so every tile is covered whatever its axes)",
                f"{ind}num_m = N_M",
                f"{ind}for tile in tl.range(tl.program_id(0), N_BH * num_m, tl.num_programs(0)):",
                f"{ind}    {x} = tile % N_BH",
                f"{ind}    {y} = tile // N_BH"]
        if "CAUSAL" in params:
            head += [f"{ind}    if CAUSAL:", f"{ind}        {y} = num_m - 1 - {y}"]
        above = [ln for ln in lines[fn.lineno - 1 - len(fn.decorator_list):body[0].lineno - 1]
                 if not (ln.strip().startswith("#") and "axis" in ln)]  # the old grid's axes
        kernel = "".join(above) + "\n".join(head) + "\n" + moved
        # signature: N_BH, N_M after the last runtime parameter
        last = runtime[-1]
        sig_lines = kernel.splitlines(keepends=True)
        row = last.lineno - (fn.lineno - len(fn.decorator_list))
        col = last.end_col_offset
        sig_lines[row] = sig_lines[row][:col] + ", N_BH, N_M" + sig_lines[row][col:]
        kernel = "".join(sig_lines)
        # host: the launch passes N_BH, N_M; the grid is the persistent one
        host_edits = [(call.args[-1], f"{segment(source, call.args[-1])}, {n_bh}, {n_m}"),
                      (gdefs[0].value, f"(min({n_bh} * {n_m}, _persistent_programs({q})),)")]
        start = fn.lineno - 1 - len(fn.decorator_list)
        out = splice(source, host_edits)  # host code follows the kernel: spans still hold
        out_lines = out.splitlines(keepends=True)
        out = "".join(out_lines[:start]) + kernel + "".join(out_lines[fn.end_lineno:])
        return _with_programs(out, host.name)
    return None


SCHEDULE_RECIPES: tuple[Recipe, ...] = (
    Recipe("persistent_lpt",
           "persistent grid (two programs per SM looping over tiles) with the longest causal "
           "query blocks first: no launch tail of long programs, one launch's setup "
           "amortised over many tiles", _persistent_lpt,
           retired={"gqa": ON_H100 + "24 % slower than seeds/gqa_naive.py, 31 % slower "
                            "than seeds/gqa.py"}),
)
