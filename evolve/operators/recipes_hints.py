"""Compiler-hint recipes: options of the attention loop's `tl.range` and of the launch.

Each applies only where its pattern is present: a KV loop (a `for` whose body calls
`tl.dot`) inside a @triton.jit function, or a kernel launch `kernel[grid](...)` that sets
`num_warps`. A Python `range` KV loop becomes `tl.range` to carry the option. The
interpreter ignores all of these (knowledge/triton-interpreter-limits.md), so on CPU a
test can only show the kernel stays correct; benchmarks/gpu/run.sh recipes measures them.
"""

from __future__ import annotations

import ast
from typing import Callable

from evolve.operators.config_edit import splice
from evolve.operators.transform import (ON_H100, Recipe, add_keyword, calls_to, is_gluon,
                                        jit_functions, launches)


def _kv_loops(fn: ast.FunctionDef) -> list[tuple[ast.For, ast.Call]]:
    """(loop, its range call) for `for x in tl.range(...)` / `range(...)` loops that hold a
    tl.dot, innermost only."""
    out = []
    for node in ast.walk(fn):
        if not (isinstance(node, ast.For) and isinstance(node.iter, ast.Call)):
            continue
        it = node.iter
        is_range = (isinstance(it.func, ast.Name) and it.func.id == "range") or (
            isinstance(it.func, ast.Attribute) and it.func.attr == "range"
            and isinstance(it.func.value, ast.Name) and it.func.value.id == "tl")
        inner = [x for x in ast.walk(node) if x is not node and isinstance(x, ast.For)]
        if is_range and any(True for _ in calls_to(node, "dot", "tl")) \
                and not any(True for x in inner for _ in calls_to(x, "dot", "tl")):
            out.append((node, it))  # (a loop around the KV loop is not one)
    return out


def _with_option(source: str, call: ast.Call, opt: str, value: str) -> tuple[ast.AST, str]:
    if isinstance(call.func, ast.Name):  # Python range -> tl.range (same arguments)
        args = ", ".join(ast.get_source_segment(source, a) for a in call.args)
        return call, f"tl.range({args}, {opt}={value})"
    return add_keyword(source, call, f"{opt}={value}")


def _range_option(opt: str, value: Callable[[ast.FunctionDef], str | None],
                  descriptor_loads_only: bool = False) -> Callable[[str], str | None]:
    """A transform adding `opt=value(fn)` to every KV loop that lacks the option."""
    def transform(source: str) -> str | None:
        tree = ast.parse(source)
        edits = []
        for fn in jit_functions(tree).values():
            for loop, call in _kv_loops(fn):
                if any(k.arg == opt for k in call.keywords):
                    continue
                if descriptor_loads_only and any(True for _ in calls_to(loop, "load", "tl")):
                    continue  # pointer loads: Hopper WS crashes there (triton #9728)
                v = value(fn)
                if v is not None:
                    edits.append(_with_option(source, call, opt, v))
        return splice(source, edits) if edits else None
    return transform


def _params(fn: ast.FunctionDef) -> set[str]:
    return {a.arg for a in fn.args.args}


def _ws_value(fn: ast.FunctionDef) -> str:
    """Warp-specialise unmasked (non-causal) iterations only, where the loop says which."""
    if "MASK" in _params(fn):
        return "MASK == 0"
    if "CAUSAL" in _params(fn):
        return "not CAUSAL"
    return "True"


def _outer_loop_option(opt: str, value: str) -> Callable[[str], str | None]:
    """`opt=value` on `tl.range` loops whose body holds another loop (directly, or through
    a call of a @jit function that has one): the persistent tile loop."""
    def transform(source: str) -> str | None:
        tree = ast.parse(source)
        jits = jit_functions(tree)
        with_loop = {n for n, f in jits.items() if any(isinstance(x, ast.For) for x in ast.walk(f))}
        edits = []
        for fn in jits.values():
            for node in ast.walk(fn):
                if not (isinstance(node, ast.For) and isinstance(node.iter, ast.Call)
                        and isinstance(node.iter.func, ast.Attribute)
                        and node.iter.func.attr == "range"
                        and not any(k.arg == opt for k in node.iter.keywords)):
                    continue
                inner = [x for x in ast.walk(node) if x is not node and (
                    isinstance(x, ast.For) or (isinstance(x, ast.Call)
                                               and isinstance(x.func, ast.Name)
                                               and x.func.id in with_loop))]
                if inner:
                    edits.append(add_keyword(source, node.iter, f"{opt}={value}"))
        return splice(source, edits) if edits else None
    return transform


def _launch_option(opt: str, value: str, gluon: bool = True) -> Callable[[str], str | None]:
    """`opt=value` on every kernel launch that sets num_warps and not opt yet; `gluon`
    False: not on launches of @gluon.jit kernels (their layouts are written for one CTA)."""
    def transform(source: str) -> str | None:
        tree = ast.parse(source)
        fns = jit_functions(tree)
        edits = [add_keyword(source, c, f"{opt}={value}") for c in launches(tree)
                 if any(k.arg == "num_warps" for k in c.keywords)
                 and not any(k.arg == opt for k in c.keywords)
                 and (gluon or not is_gluon(fns[c.func.value.id]))]
        return splice(source, edits) if edits else None
    return transform


HINT_RECIPES: tuple[Recipe, ...] = (
    Recipe("range_unroll2",
           "unroll the KV loop twice (tl.range loop_unroll_factor=2): two tiles' loads and "
           "softmax in one body give the scheduler more independent work to interleave",
           _range_option("loop_unroll_factor", lambda fn: "2"),
           retired={"gqa": ON_H100 + "26 % slower than seeds/gqa_naive.py, 32 % slower "
                            "than seeds/gqa.py"}),
    Recipe("range_no_acc_multibuffer",
           "forbid multi-buffering the dot accumulator in the pipelined KV loop "
           "(tl.range disallow_acc_multi_buffer=True): frees registers/shared memory for "
           "deeper K/V stages", _range_option("disallow_acc_multi_buffer", lambda fn: "True")),
    Recipe("range_flatten",
           "flatten the persistent tile loop with the KV loop inside it (tl.range "
           "flatten=True) so the pipeliner sees one loop and prefetches across tiles",
           _outer_loop_option("flatten", "True")),
    Recipe("warp_specialize_kv",
           "automatic warp specialisation of the unmasked KV loop (tl.range "
           "warp_specialize): a producer warp issues the TMA loads, consumers run "
           "the GEMMs and softmax (Hopper: descriptor loads only, non-causal iterations)",
           _range_option("warp_specialize", _ws_value, descriptor_loads_only=True),
           retired={"*": ON_H100 + "fails to compile on seeds/gqa.py, every shape "
                          "(NVGPUWarpSpecialization: unsupported op type), and failed its "
                          "try in the naive run"}),
    Recipe("maxnreg_168",
           "cap registers per thread at 168 (launch maxnreg): the tutorial's value for "
           "hdim 128; more resident warps if the kernel fits without spilling",
           _launch_option("maxnreg", "168"),
           # not for decode: +48.8 % on decode_naive in an H100 run (session 4)
           retired={"gqa": ON_H100 + "1.6 % slower than seeds/gqa_naive.py, 56 % slower "
                            "than seeds/gqa.py"}),
    Recipe("num_ctas_2",
           "launch in clusters of two CTAs (num_ctas=2, Hopper thread-block clusters): "
           "adjacent programs (same head, same K/V tiles) are co-scheduled on "
           "neighbouring SMs",
           # not on Gluon kernels: the Gluon seed with num_ctas=2 failed to compile for
           # sm_90a on every shape (benchmarks/sm90_compile.py, 2026-12-06)
           _launch_option("num_ctas", "2", gluon=False),
           retired={"*": ON_H100 + "fails to compile on seeds/gqa_naive.py and "
                          "seeds/gqa.py, every shape (PlanCTA: CTA tiling is already "
                          "determined); 9 of 9 tries failed in a decode_naive run"}),
)
