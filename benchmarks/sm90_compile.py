"""Compile a Hopper attention kernel for sm_90a on a machine without a GPU (issue 20).

    python benchmarks/sm90_compile.py seeds/gqa_gluon.py [--config JSON] [--dtype bf16|fp16]
                                      [--suite default] [--json OUT.json] [--ops]

Gluon does not run in the CPU interpreter, so a broken edit of a Gluon kernel used to show
only on a GPU. This tool calls the kernel file's `attention` on every shape of a gqa suite
with empty CPU tensors that report `is_cuda`, Triton's active driver replaced by one that
names an sm_90 target, and every launch turned into a compile-only warmup (Triton compiles
down to PTX and a cubin without a device). Then it runs Triton's bundled `ptxas -v` on each
compiled kernel's PTX. Per specialisation it prints the kernel, warps, shared memory,
registers, bytes spilled and "ex2 ovl": how many exp2s the SASS issues while a wgmma group
is still in flight (0: ptxas retired the previous PV before the softmax, so the
intra-warpgroup overlap written in the source is gone; "-": the kernel never waits with a
group in flight), and "cvt ovl", the same for the conversions of P to 16 bits (0: they all
follow the wait, and the next wgmmas wait for them); `--ops` adds its SASS instruction
count and the counts of the softmax's FP32 opcodes, MUFU, HGMMA and F2FP. Exit 1 when a
shape fails to compile or a kernel needs more shared memory than an H100 block may have
(227 KiB).

It measures nothing about speed, and it is trusted tooling: the kernel file's host code
runs here unsandboxed, so use it on your own kernels, not on candidates from a run.
`--config` overrides the module's CONFIG (a JSON object; a class of a per-class CONFIG is
merged knob by knob: '{"D128_NC": {"PINGPONG": 1}}') before the calls, to check a
variant's settings before spending GPU time on them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SM90_SMEM_LIMIT = 227 * 1024  # bytes of shared memory one block may use on an H100
SM_COUNT = 132  # an H100 SXM, for host code that sizes a persistent grid
OPS = ("FFMA", "FMUL", "FADD", "FMNMX", "MUFU", "HGMMA", "F2FP")
_LAUNCHES: list[str] = []  # the kernels `attention` launched (compiled), in order


@dataclass
class Compiled:
    """One compiled specialisation: ``shared`` in bytes; registers and spills from ptxas."""

    kernel: str
    spec: str  # its constexpr arguments, NAME=value
    num_warps: int
    shared: int
    registers: int | None
    spill_bytes: int | None
    # exp2s issued while one wgmma group is still in flight: the fewest MUFU.EX2 between a
    # `WARPGROUP.DEPBAR.LE gsb0, 0x1` and the next `... 0x0` in the SASS (the softmax that
    # overlaps the previous tile's PV); None when the kernel never waits with one in flight
    ex2_in_flight: int | None = None
    # the same for the conversions of P to 16 bits (F2FP): 0 = all after the wait, where
    # the next wgmmas wait for them
    f2fp_in_flight: int | None = None
    # SASS instructions in the kernel, and those of the opcodes in OPS (the softmax's FP32
    # work, its exp2s, the wgmmas and the conversions of P): to compare two forms of a
    # kernel's source without a GPU (`--ops`); counts, not time
    instructions: int | None = None
    ops: dict[str, int] | None = None

    def problems(self) -> list[str]:
        """What keeps it from launching on an H100 (spills only cost speed: shown, not here)."""
        return [f"shared memory {self.shared} > {SM90_SMEM_LIMIT} bytes"] if self.shared > SM90_SMEM_LIMIT else []


def _fake_hopper() -> None:
    """Triton's driver, torch.cuda's queries and launches as on an H100, minus the H100."""
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    class Sm90Driver:
        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_active_torch_device(self):
            return torch.device("cpu")

        def is_active(self):
            return True

    driver.set_active(Sm90Driver())
    run = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        _LAUNCHES.append(self.__name__)
        return run(self, *args, grid=grid, warmup=True, **kwargs)

    JITFunction.run = compile_only
    torch.cuda.get_device_capability = lambda *a, **k: (9, 0)
    torch.cuda.get_device_properties = lambda *a, **k: SimpleNamespace(
        multi_processor_count=SM_COUNT, name="sm_90 (compile only)", major=9, minor=0)


def _load(path: Path):
    spec = importlib.util.spec_from_file_location("kernel_under_check", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _ptxas(ptx: str) -> tuple[int | None, int | None]:
    """(registers, spill bytes) of one kernel's PTX, from ptxas -v for sm_90a."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        r = subprocess.run([get_ptxas(90).path, "-v", "--gpu-name", "sm_90a", f.name, "-o", os.devnull],
                           capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(f.name)
    regs = re.search(r"Used (\d+) registers", r.stderr)
    spills = [int(a) + int(b) for a, b in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads",
                                                      r.stderr)]
    return (int(regs.group(1)) if regs else None), (max(spills) if spills else None)


def compile_suite(kernel: Path, suite: str = "default", dtype: str = "bf16",
                  config: dict | None = None) -> tuple[list[Compiled], list[str]]:
    """Every specialisation `attention` compiles on the suite's shapes; (compiled, errors)."""
    os.environ.pop("TRITON_INTERPRET", None)  # the real compiler, also under CPU test setups
    _fake_hopper()
    import torch
    from triton.runtime.jit import JITFunction

    from evaluator import get_target

    class CudaLike(torch.Tensor):
        @property
        def is_cuda(self):
            return True

    mod = _load(kernel)
    if config:
        from bench_util import with_overrides

        mod.CONFIG.update(with_overrides(mod.CONFIG, config))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    jits = [v for v in vars(mod).values() if isinstance(v, JITFunction)]
    errors: list[str] = []
    for shape in get_target("gqa").suite(suite):
        q = torch.empty(shape.B, shape.Hq, shape.S, shape.D, dtype=tdt).as_subclass(CudaLike)
        k = torch.empty(shape.B, shape.Hkv, shape.S, shape.D, dtype=tdt).as_subclass(CudaLike)
        n = len(_LAUNCHES)
        try:
            mod.attention(q, k, k, causal=shape.causal)
        except Exception as exc:  # noqa: BLE001 - reported per shape
            errors.append(f"{shape.name}: {_reason(exc)}")
            continue
        if len(_LAUNCHES) == n:
            errors.append(f"{shape.name}: no Triton or Gluon kernel was launched")
    from evaluator.profile_stage import spec_of
    from evaluator.sass import cubin_sass, ex2_in_flight, f2fp_in_flight, opcode_counts

    out = []
    for j in jits:
        for ck in _cache(j).values():
            regs, spills = _ptxas(ck.asm["ptx"])
            text = cubin_sass(ck.asm["cubin"])
            counts = opcode_counts(text) if text else None
            out.append(Compiled(j.__name__, spec_of(ck), ck.metadata.num_warps, ck.metadata.shared,
                                regs, spills, ex2_in_flight(text) if text else None,
                                f2fp_in_flight(text) if text else None,
                                sum(counts.values()) if counts else None,
                                {k: counts.get(k, 0) for k in OPS} if counts else None))
    return out, errors


def _reason(exc: BaseException) -> str:
    """The compiler's own words: the innermost cause (Triton chains a CompilationError per
    inlined function), without the source excerpt and its caret line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    msg = str(getattr(exc, "error_message", None) or exc)
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip() and ln.strip() != "^"]
    where = str(exc).split("\n", 1)[0] if str(exc).startswith("at ") else ""
    return f"{type(exc).__name__}{' ' + where.rstrip(':') if where else ''}: " + (lines[-1][:300] if lines else "")


def _cache(jit) -> dict:
    caches = jit.device_caches.get(0) if hasattr(jit.device_caches, "get") else None
    return caches[0] if caches else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kernel", type=Path)
    ap.add_argument("--config", type=json.loads, default=None, help="CONFIG overrides, a JSON object")
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--json", type=Path, default=None, help="also write the records here")
    ap.add_argument("--ops", action="store_true",
                    help="also print each specialisation's SASS instruction count and its "
                         "counts of " + ", ".join(OPS))
    a = ap.parse_args(argv)
    if not a.kernel.is_file():
        print(f"error: no kernel file {a.kernel}", file=sys.stderr)
        return 2
    compiled, errors = compile_suite(a.kernel, a.suite, a.dtype, a.config)
    print(f"{'kernel':<24} {'warps':>5} {'smem KiB':>8} {'regs':>5} {'spills':>6} {'ex2 ovl':>7} "
          f"{'cvt ovl':>7}")
    for c in compiled:
        print(f"{c.kernel[:24]:<24} {c.num_warps:>5} {c.shared / 1024:>8.1f} "
              f"{c.registers if c.registers is not None else '?':>5} "
              f"{c.spill_bytes if c.spill_bytes is not None else '?':>6} "
              f"{c.ex2_in_flight if c.ex2_in_flight is not None else '-':>7} "
              f"{c.f2fp_in_flight if c.f2fp_in_flight is not None else '-':>7}"
              + ("  " + "; ".join(c.problems()) if c.problems() else ""))
        print(f"  {c.spec[:76]}")
        if a.ops and c.ops is not None:
            print(f"  {c.instructions} instructions: "
                  + " ".join(f"{k} {v}" for k, v in c.ops.items()))
    for e in errors:
        print("\n".join(textwrap.wrap("error: " + e, 80, subsequent_indent="  ")))
    if a.json:
        a.json.write_text(json.dumps({"compiled": [asdict(c) for c in compiled], "errors": errors}, indent=1))
    bad = errors or [c for c in compiled if c.problems()]
    spilled = sum(1 for c in compiled if c.spill_bytes)
    print(f"{len(compiled)} specialisations, {spilled} spilling, {len(errors)} shapes failed"
          + (", problems above" if bad else ", shared memory within the limit"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
