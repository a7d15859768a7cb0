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
HOISTED = ROOT / "benchmarks" / "gpu" / "gluon_variants" / "hoisted_wait.py"


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
        # the softmax of tile j runs while PV(j-1) is on the tensor cores (all of its
        # exp2s: BLOCK_N / 2 per thread for 64 rows, + 1 for alpha)
        assert c["ex2_in_flight"] is not None and c["ex2_in_flight"] >= 33, c
    assert all(len(line) <= 80 for line in r.stdout.splitlines())


def test_the_tool_shows_when_ptxas_retires_the_pv_before_the_softmax(tmp_path):
    """The seed before the fix: V(j-1) waited for at the top of the iteration, so nothing
    separates the softmax from the wgmma wait below it, and ptxas hoists that wait above
    the softmax (the overlap written in the source is gone: 0 exp2s in flight)."""
    path = tmp_path / "hoisted.py"
    r = subprocess.run([sys.executable, str(HOISTED), str(path)], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = _run(path, tmp_path / "h.json", "--suite", "quick")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = json.loads((tmp_path / "h.json").read_text())
    assert got["compiled"] and {c["ex2_in_flight"] for c in got["compiled"]} == {0}


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
