"""The Gluon seed on a machine without a GPU (issue 20): benchmarks/sm90_compile.py
compiles it for sm_90a on every default-suite shape (Triton builds PTX and a cubin without
a device) and ptxas reports its registers and spills. Gluon does not run in the CPU
interpreter, so this is the only check CI has that the seed still compiles; a broken edit
fails here with the shape and the compiler's words."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "benchmarks" / "sm90_compile.py"
VARIANTS = ROOT / "benchmarks" / "gpu" / "gluon_variants"


def _run(kernel: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(kernel), "--json", str(out), *extra],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_the_gluon_seed_compiles_for_sm90_on_every_default_shape(tmp_path):
    r = _run(ROOT / "seeds" / "gqa_gluon.py", tmp_path / "g.json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = json.loads((tmp_path / "g.json").read_text())
    assert got["errors"] == []
    kernels = {c["kernel"] for c in got["compiled"]}
    assert kernels == {"_attn_fwd", "_attn_fwd_ws"}  # D=64 plain, D=128 warp-specialised
    for c in got["compiled"]:
        assert 0 < c["shared"] <= 227 * 1024 and c["num_warps"] in (4, 8, 12), c
        assert c["registers"] and c["registers"] <= 255 and c["spill_bytes"] == 0, c
        assert "HEAD_DIM=" in c["spec"] and "BLOCK_N=" in c["spec"]
        if c["kernel"] == "_attn_fwd":
            # the softmax of tile j runs while PV(j-1) is on the tensor cores (all of its
            # exp2s: BLOCK_N / 2 per thread for 64 rows, + 1 for alpha)
            assert c["ex2_in_flight"] is not None and c["ex2_in_flight"] >= 33, c
        else:  # PV(j-1) retired before the softmax: measured faster in this kernel (H100)
            assert c["ex2_in_flight"] == 0, c
    assert all(len(line) <= 80 for line in r.stdout.splitlines())


def test_the_tool_shows_where_ptxas_retires_the_pv_before_the_softmax(tmp_path):
    """hoisted_wait.py: the plain kernel's V(j-1) waited for at the top of the iteration, as
    before session 5, so nothing separates the softmax from the wgmma wait below it and
    ptxas hoists that wait above the softmax in every kernel (0 exp2s in flight).
    overlap_wait.py: the V(j) wait between the two in every kernel, the warp-specialised
    one included (the overlap kept everywhere: 33 or more), but the conversions of P to
    16 bits all follow the wait ("cvt ovl" 0); with --convert-first they run before it.
    turn_if.py: the seed with its ping-pong handshake behind a branch."""
    def compiled(tool: str, *flags: str) -> dict[str, list[dict]]:
        path = tmp_path / f"{tool}{''.join(flags)}.py"
        r = subprocess.run([sys.executable, str(VARIANTS / tool), *flags, str(path)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        r = _run(path, tmp_path / f"{path.stem}.json", "--suite", "quick")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out: dict[str, list[dict]] = {}
        for c in json.loads((tmp_path / f"{path.stem}.json").read_text())["compiled"]:
            out.setdefault(c["kernel"], []).append(c)
        assert set(out) == {"_attn_fwd", "_attn_fwd_ws"}
        return out

    hoisted = compiled("hoisted_wait.py")
    assert {c["ex2_in_flight"] for cs in hoisted.values() for c in cs} == {0}
    overlap = compiled("overlap_wait.py")
    assert min(c["ex2_in_flight"] for cs in overlap.values() for c in cs) >= 33
    assert {c["f2fp_in_flight"] for c in overlap["_attn_fwd_ws"]} == {0}
    first = compiled("overlap_wait.py", "--convert-first")
    assert all(c["ex2_in_flight"] >= 64 and c["f2fp_in_flight"] >= 32
               for c in first["_attn_fwd_ws"]), first["_attn_fwd_ws"]
    # turn_if.py: the ping-pong handshake behind a branch compiles, and the exp2s in
    # flight stay as in the seed (plain kernel overlapped, WS kernel not)
    turn = compiled("turn_if.py")
    assert min(c["ex2_in_flight"] for c in turn["_attn_fwd"]) >= 33
    assert {c["ex2_in_flight"] for c in turn["_attn_fwd_ws"]} == {0}


def test_the_worker_writes_cubins_and_the_parent_reads_the_overlap_off_them(tmp_path):
    """The worker's sandbox lets it start no tool but Triton's own, so with a profile it
    only writes the cubins of the kernels that wait with a wgmma group in flight
    (profile_stage.collect); the parent runs nvdisasm on them (sass.fill_overlap) and
    ignores what the worker claims, a name outside the folder, or a link."""
    script = f"""
import json, os, sys
from pathlib import Path
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "benchmarks")!r}]
import sm90_compile
from evaluator import profile_stage, sass
sm90_compile.compile_suite(Path({str(ROOT / "seeds" / "gqa_gluon.py")!r}), "quick")
mod = sys.modules["kernel_under_check"]
log = profile_stage.CompileLog()
log.fns = [v for v in vars(mod).values() if hasattr(v, "device_caches")]
out = Path({str(tmp_path)!r})
recs = profile_stage.collect(log, load=False, sass_dir=out)
written = sorted(p.name for p in out.iterdir())
link = recs[0]["sass_file"] or recs[-1]["sass_file"]
os.symlink(out / link, out / "99.cubin")
recs += [{{"kernel": "claims", "ex2_in_flight": 64, "f2fp_in_flight": 32}},
         {{"kernel": "escapes", "sass_file": "../x.cubin"}},
         {{"kernel": "link", "sass_file": "99.cubin"}}]
sass.fill_overlap(recs, out)
print(json.dumps({{"recs": recs, "written": written}}))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    recs = {}
    for rec in got["recs"]:
        recs.setdefault(rec["kernel"], []).append(rec["ex2_in_flight"])
        assert (rec["f2fp_in_flight"] is None) == (rec["ex2_in_flight"] is None), rec
    assert len(got["written"]) == len(recs["_attn_fwd"]) + len(recs["_attn_fwd_ws"]) >= 2
    assert all(n >= 33 for n in recs["_attn_fwd"]) and set(recs["_attn_fwd_ws"]) == {0}, recs
    assert recs["claims"] == recs["escapes"] == recs["link"] == [None]
    assert all("sass_file" not in rec for rec in got["recs"])


def test_a_broken_gluon_edit_fails_with_the_shape_and_the_reason(tmp_path):
    src = (ROOT / "seeds" / "gqa_gluon.py").read_text()
    assert "gl.exp2(" in src
    broken = tmp_path / "broken.py"
    broken.write_text(src.replace("gl.exp2(", "gl.exp3("))
    r = _run(broken, tmp_path / "b.json", "--suite", "quick")
    assert r.returncode == 1, r.stdout[-2000:]
    got = json.loads((tmp_path / "b.json").read_text())
    quick = 4
    assert len(got["errors"]) >= 1 and len(got["errors"]) <= quick, got["errors"]
    assert all("exp3" in e and " D=" in e for e in got["errors"]), got["errors"]
    assert "4 shapes failed" in r.stdout or f"{len(got['errors'])} shapes failed" in r.stdout
    assert all(len(line) <= 80 for line in r.stdout.splitlines())


def test_opcode_counts_read_base_opcodes_of_predicated_and_plain_instructions():
    from evaluator.sass import opcode_counts

    sass = ("        /*0100*/                   FFMA R3, R4, R5, R6 ;\n"
            "        /*0110*/              @!P0 MUFU.EX2 R7, R8 ;\n"
            "        /*0120*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;\n"
            "        /*0130*/               @P1 FFMA R3, R4, R5, R6 ;\n"
            "  .text._attn_fwd:  /* a label, not an instruction */\n")
    assert opcode_counts(sass) == {"FFMA": 2, "MUFU": 1, "HGMMA": 1}


def test_the_fma_form_of_the_folded_scale_issues_fewer_instructions(tmp_path):
    """fold_scale_exp2 on the naive seed (the row max of unscaled scores: one FMA per
    score) against the same recipe where the max is of scaled scores (every score
    multiplied first): fewer SASS instructions for sm_90a, the same exp2s and wgmmas."""
    from evolve.operators.recipes import RECIPES

    naive = (ROOT / "seeds" / "gqa_naive.py").read_text()
    scaled_max = naive.replace("tl.max(qk, 1) * sm_scale", "tl.max(qk * sm_scale, 1)")
    assert scaled_max != naive
    got = {}
    for name, src in (("fma", naive), ("mul", scaled_max)):
        kernel = tmp_path / f"{name}.py"
        kernel.write_text(RECIPES["fold_scale_exp2"].apply(src))
        r = _run(kernel, tmp_path / f"{name}.json", "--suite", "smoke", "--ops")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "instructions: FFMA" in r.stdout
        got[name] = {c["spec"]: c for c in json.loads((tmp_path / f"{name}.json").read_text())["compiled"]}
    assert got["fma"].keys() == got["mul"].keys() and got["fma"]
    for spec, fma in got["fma"].items():
        mul = got["mul"][spec]
        assert fma["instructions"] < mul["instructions"], spec
        assert fma["ops"]["FMUL"] < mul["ops"]["FMUL"], spec
        assert fma["ops"]["MUFU"] == mul["ops"]["MUFU"] and fma["ops"]["HGMMA"] == mul["ops"]["HGMMA"]
