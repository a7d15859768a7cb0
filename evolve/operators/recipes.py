"""Source-level recipes of the offline operator.

Each recipe is a transform of kernel source that applies only where its pattern is
present; `apply()` returns the new source, or None when the pattern is absent (the
recipe is then reported as not applicable, never forced). Edits are spliced into
the original text at ast-located spans so the rest of the file is untouched.

This module holds the softmax and loop-structure recipes; compiler hints (tl.range
options, launch options) are in recipes_hints.py, TMA descriptors in recipes_memory.py,
the persistent grid in recipes_schedule.py; `RECIPES` is all of them.
"""

from __future__ import annotations

import ast
import re

from evolve.operators.config_edit import splice
from evolve.operators.recipes_hints import HINT_RECIPES
from evolve.operators.recipes_memory import MEMORY_RECIPES
from evolve.operators.recipes_schedule import SCHEDULE_RECIPES
from evolve.operators.transform import (LOG2E, Recipe, add_keyword, indent_of, is_jit as _is_jit,
                                        jit_functions, launches, segment,
                                        wrap_call as _wrap_call)

__all__ = ["RECIPES", "Recipe"]

# --- fold_scale_exp2 -----------------------------------------------------------

_EXP_SCALED = re.compile(
    r"^(?P<ind>\s*)(?P<p>\w+) = tl\.exp\((?P<qk>\w+) \* (?P<scale>\w+) - (?P<m>[^\n]+)\)\s*$")


def _fold_scale_exp2(source: str) -> str | None:
    """tl.exp(qk * scale - m) -> tl.exp2 everywhere with scale*log2(e). Where the row max
    is taken on unscaled scores (`tl.max(qk, 1) * scale`: the kernel keeps the scale
    positive) the scaled score stays one FMA, `tl.exp2(qk * c - m)`; where the max is of
    scaled scores, qk is multiplied by c once before it. For sm_90a the FMA form issues
    2.6-3.7 % fewer SASS instructions per kernel than scaling every score first (the same
    MUFU and HGMMA counts; `benchmarks/sm90_compile.py --ops` on the naive stack, 2026-12-07:
    benchmarks/results/2026-12-07-h100-session11/sass_fold_scale.txt)."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        m = _EXP_SCALED.match(line)
        if not m:
            continue
        qk, scale, ind = m.group("qk"), m.group("scale"), m.group("ind")
        # the running max of the scaled scores, computed just above
        max_pat = [re.compile(rf"tl\.max\({qk}, 1\) \* {scale}\b"),
                   re.compile(rf"tl\.max\({qk} \* {scale}, 1\)")]
        j = next((j for j in range(i - 1, max(i - 6, -1), -1)
                  if any(p.search(lines[j]) for p in max_pat)), None)
        if j is None:
            return None
        # the loop body that holds both lines: rewrite natural exps of max differences
        body_end = i + 1
        while body_end < len(lines) and (lines[body_end].startswith(ind) or not lines[body_end].strip()):
            body_end += 1
        new = list(lines)
        c = f"({scale} * {LOG2E})"
        for k in range(j + 1, body_end):
            if k != i:
                new[k] = new[k].replace("tl.exp(", "tl.exp2(")
        if max_pat[0].search(lines[j]):  # max of unscaled scores: the scale stays in an FMA
            new[j] = max_pat[0].sub(f"tl.max({qk}, 1) * {c}", new[j])
            new[i] = f"{ind}{m.group('p')} = tl.exp2({qk} * {c} - {m.group('m')})"
            fold = [f"{ind}# exp(x) = exp2(x * log2 e): the scale times log2(e), one FMA per score"]
        else:
            new[j] = max_pat[1].sub(f"tl.max({qk}, 1)", new[j])
            new[i] = f"{ind}{m.group('p')} = tl.exp2({qk} - {m.group('m')})"
            fold = [f"{ind}# scale folded into one multiply by sm_scale * log2(e): exp(x) = exp2(x * log2 e)",
                    f"{ind}{qk} = {qk} * {c}"]
        new[j:j] = fold
        return "\n".join(new) + ("\n" if source.endswith("\n") else "")
    return None


# --- split_causal_loop -----------------------------------------------------------

def _split_causal_loop(source: str) -> str | None:
    """One masked loop up to the diagonal -> unmasked off-diagonal loop + masked band."""
    tree = ast.parse(source)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    inner = {n: f for n, f in funcs.items() if _is_jit(f)
             and {"CAUSAL", "lo", "hi"} <= {a.arg for a in f.args.args}}
    for kname, kernel in funcs.items():
        if not _is_jit(kernel):
            continue
        calls = [(st, st.value) for st in ast.walk(kernel) if isinstance(st, ast.Assign)
                 and isinstance(st.value, ast.Call) and isinstance(st.value.func, ast.Name)
                 and st.value.func.id in inner]
        if len(calls) != 1:
            continue  # absent, or already split into several loops
        stmt, call = calls[0]
        fdef = inner[call.func.id]
        params = [a.arg for a in fdef.args.args]
        if call.keywords or len(call.args) != len(params):
            continue
        kparams = {a.arg for a in kernel.args.args}
        assigned = {t.id for n in ast.walk(kernel) if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
        if not ({"BLOCK_M", "BLOCK_N"} <= kparams and "start_m" in assigned):
            continue
        args = [ast.get_source_segment(source, a) for a in call.args]
        ic, ilo, ihi = params.index("CAUSAL"), params.index("lo"), params.index("hi")
        if args[ic] != "CAUSAL":
            continue
        lines = source.splitlines(keepends=True)
        ind = lines[stmt.lineno - 1][:stmt.col_offset]  # the call statement's indent
        targets = ", ".join(ast.get_source_segment(source, t) for t in stmt.targets) + " = "
        off, diag = list(args), list(args)
        off[ihi], off[ic] = "split_n", "False"
        diag[ilo], diag[ic] = "split_n", "True"
        new = [f"{ind}if CAUSAL:",
               f"{ind}    # key blocks left of the diagonal band are visible to every query row:",
               f"{ind}    # stream them without the causal mask, then mask only the band",
               f"{ind}    split_n = tl.maximum({args[ilo]}, (start_m * BLOCK_M) // BLOCK_N * BLOCK_N)"]
        new += _wrap_call(targets, call.func.id, off, ind + "    ")
        new += _wrap_call(targets, call.func.id, diag, ind + "    ")
        new += [f"{ind}else:"]
        new += _wrap_call(targets, call.func.id, args, ind + "    ")
        return "".join(lines[:stmt.lineno - 1] + [ln + "\n" for ln in new]
                       + lines[stmt.end_lineno:])
    return None


# --- swap_grid_order -------------------------------------------------------------

def _swap_grid_order(source: str) -> str | None:
    """Swap grid axes 0 and 1 (host grid tuple and the kernel's program_id axes)."""
    tree = ast.parse(source)
    grids = [n for n in ast.walk(tree) if isinstance(n, ast.Assign) and len(n.targets) == 1
             and isinstance(n.targets[0], ast.Name) and n.targets[0].id == "grid"
             and isinstance(n.value, ast.Tuple) and len(n.value.elts) in (2, 3)]
    if len(grids) != 1:
        return None
    elts = grids[0].value.elts
    if len(elts) == 3 and not (isinstance(elts[2], ast.Constant) and elts[2].value == 1):
        return None
    pids = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == "program_id"
            and len(n.args) == 1 and isinstance(n.args[0], ast.Constant)]
    axes = sorted(p.args[0].value for p in pids)
    if axes != [0, 1]:
        return None  # a 1-D / persistent grid, or axes used more than once
    a, b = elts[0], elts[1]
    edits = [(a, ast.get_source_segment(source, b)), (b, ast.get_source_segment(source, a))]
    edits += [(p.args[0], str(1 - p.args[0].value)) for p in pids]
    out = splice(source, edits)
    # keep a comment that documents the axes truthful
    return _AXES_COMMENT.sub(lambda m: f"{m.group(1)}axis 0 = {m.group(3)}, axis 1 = {m.group(2)}",
                             out)


_AXES_COMMENT = re.compile(r"^(\s*#.*?)axis 0 = (.+?), axis 1 = (.+?)$", re.M)


# --- unmasked_full_tiles ---------------------------------------------------------

def _unmasked_full_tiles(source: str) -> str | None:
    """Scores masked against S on every key tile -> only when S is not a multiple of
    BLOCK_N (a constexpr EVEN_N the host passes) or the tile is causal. The pattern: a KV
    function with a CAUSAL parameter that sets ``mask = ... < S`` and then
    ``qk = tl.where(mask, qk, ...)``; it is called with positional arguments only from
    kernels launched with a ``BLOCK_N=`` keyword in a host function that knows ``S``."""
    tree = ast.parse(source)
    jits = jit_functions(tree)
    for name, fn in jits.items():
        params = [a.arg for a in fn.args.args]
        if "CAUSAL" not in params or "EVEN_N" in params or fn.args.defaults:
            continue
        masks = {st.targets[0].id for st in ast.walk(fn) if isinstance(st, ast.Assign)
                 and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name)
                 and isinstance(st.value, ast.Compare) and len(st.value.ops) == 1
                 and isinstance(st.value.ops[0], ast.Lt)
                 and isinstance(st.value.comparators[0], ast.Name)
                 and st.value.comparators[0].id == "S"}
        wheres = [st for loop in ast.walk(fn) if isinstance(loop, ast.For)
                  for st in ast.walk(loop) if isinstance(st, ast.Assign)
                  and isinstance(st.value, ast.Call) and segment(source, st.value.func) == "tl.where"
                  and st.value.args and isinstance(st.value.args[0], ast.Name)
                  and st.value.args[0].id in masks]
        if len(wheres) != 1:
            continue
        callers = {k: f for k, f in jits.items() if k != name
                   and any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                           and c.func.id == name for c in ast.walk(f))}
        calls = [c for f in callers.values() for c in ast.walk(f) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Name) and c.func.id == name]
        if not calls or any(c.keywords or len(c.args) != len(params) for c in calls) \
                or any("EVEN_N" in {a.arg for a in f.args.args} or f.args.defaults
                       for f in callers.values()):
            continue
        hosts = [f for f in tree.body if isinstance(f, ast.FunctionDef) and not _is_jit(f)]
        mine = [c for c in launches(tree) if c.func.value.id in callers]
        runs = [(h, c) for h in hosts for c in mine if any(c is n for n in ast.walk(h))]
        if {c.func.value.id for _, c in runs} != set(callers):
            continue
        edits = []
        for host, run in runs:
            block_n = next((k.value for k in run.keywords if k.arg == "BLOCK_N"), None)
            knows_s = any(isinstance(t, ast.Name) and t.id == "S" for n in ast.walk(host)
                          if isinstance(n, ast.Assign) for tgt in n.targets
                          for t in ([tgt] + list(getattr(tgt, "elts", []))))
            if block_n is None or not knows_s:
                return None
            edits.append(add_keyword(source, run,
                                     f"EVEN_N=S % {segment(source, block_n)} == 0"))
        st = wheres[0]
        ind = indent_of(source, st)
        edits.append((st, "# a full key tile (S a multiple of BLOCK_N) needs no mask against S\n"
                          f"{ind}if CAUSAL or not EVEN_N:\n{ind}    {segment(source, st)}"))
        edits.append((fn.args.args[-1], segment(source, fn.args.args[-1]) + ", EVEN_N: tl.constexpr"))
        for f in callers.values():
            edits.append((f.args.args[-1], segment(source, f.args.args[-1]) + ", EVEN_N: tl.constexpr"))
        for c in calls:
            edits.append((c.args[-1], segment(source, c.args[-1]) + ", EVEN_N"))
        return splice(source, edits)
    return None


# paid: each kept recipe's gain against seeds/gqa_naive.py on an H100 (transform.ON_H100)
RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        # paid: measured (2026-12-06) for the form that multiplied every score by the scale
        # before the row max; the FMA form it writes now issues fewer instructions
        Recipe("fold_scale_exp2",
               "use exp2 with the softmax scale times log2(e) folded into one FMA per score "
               "(MUFU.EX2 directly, no natural-exp rescaling, no separate multiply)",
               _fold_scale_exp2, paid={"gqa": 0.094}),
        Recipe("split_causal_loop",
               "split the causal loop: off-diagonal key blocks run without the mask, only "
               "the diagonal band pays for tl.where", _split_causal_loop,
               paid={"gqa": 0.034}),
        Recipe("unmasked_full_tiles",
               "mask the scores against S only when S is not a multiple of BLOCK_N (a "
               "constexpr EVEN_N): full key tiles skip the compare and select per score",
               _unmasked_full_tiles),
        Recipe("swap_grid_order",
               "swap the grid axes so the scheduler walks the other dimension first "
               "(M-tiles of one head adjacent vs heads adjacent: different L2 reuse of K/V)",
               _swap_grid_order,
               paid={"gqa": 0.042}),
    ) + HINT_RECIPES + MEMORY_RECIPES + SCHEDULE_RECIPES
}

