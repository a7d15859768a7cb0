"""Gluon candidates (issue 20): allowed by the static check with the usual anti-cheat rules;
without a GPU an evaluation answers ``needs_gpu`` (the interpreter cannot run Gluon) instead
of crashing or reporting a mismatch; on a GPU the Gluon seed passes the quick suite."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluator import FAILURE_CLASSES, compare_candidates, evaluate
from evaluator.runner import gpu_available
from evaluator.static_check import check_source, gpu_only_reason

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "gqa_gluon.py"
NO_GPU = pytest.mark.skipif(gpu_available(), reason="the needs-a-GPU answer is for machines without one")

# A small honest Gluon candidate (every import form the seed and the tutorials use); the
# cheats below are spliced into its attention() body.
GLUON_CANDIDATE = '''
import math
import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
import triton.experimental.gluon.language.nvidia.hopper as hopper


@gluon.jit
def _copy(src, dst, N: gl.constexpr):
    layout: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    offs = gl.arange(0, N, layout=layout)
    gl.store(dst + offs, gl.load(src + offs))


def attention(q, k, v, *, causal=False, sm_scale=None):
    out = torch.empty_like(q)
    #CHEAT#
    _copy[(1,)](q, out, N=128, num_warps=4)
    return out
'''

CHEATS = {
    "sdpa": ("import torch.nn.functional as F\n    out = F.scaled_dot_product_attention(q, k, v)",
             {"import", "name", "method"}),
    "torch_matmul": ("s = torch.matmul(q, k.transpose(-1, -2))", {"name"}),
    "tensor_matmul_method": ("s = q.matmul(k.transpose(-1, -2))", {"method"}),
    "at_operator": ("s = q @ k.transpose(-1, -2)", {"matmul"}),
    "softmax": ("p = torch.softmax(q, -1)", {"name"}),
    "fallback": ("try:\n        pass\n    except Exception:\n        pass", {"try-except"}),
    "gluon_internals": ("from triton.experimental.gluon._runtime import jit", {"import"}),
    "os": ("import os", {"import"}),
}


def _candidate(cheat: str = "") -> str:
    return GLUON_CANDIDATE.replace("#CHEAT#", cheat)


def test_the_seed_and_a_gluon_candidate_pass_the_static_check():
    assert check_source(SEED.read_text(), SEED.name) == []
    assert check_source(_candidate(), "c.py") == []


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheats_inside_a_gluon_file_are_still_forbidden(name):
    code, rules = CHEATS[name]
    found = check_source(_candidate(code), "c.py")
    assert found, f"{name} passed the static check"
    assert {v.rule for v in found} & rules, found


@pytest.mark.parametrize("line", [
    "import triton.experimental.gluon",
    "import triton.experimental.gluon.language as gl",
    "from triton.experimental import gluon",
    "from triton.experimental.gluon import language as gl",
    "from triton.experimental.gluon.language.nvidia.hopper import tma",
    "def f():\n    from triton.experimental.gluon import jit",
])
def test_gpu_only_reason_sees_every_import_form(line):
    why = gpu_only_reason(f"import torch\n{line}\n")
    assert why is not None and "Gluon" in why and "interpreter" in why


@pytest.mark.parametrize("source", [
    (ROOT / "seeds" / "gqa.py").read_text(),
    "import triton.experimental\n",
    "from triton.experimental import other\n",
    "import gluon\n",                       # not Triton's Gluon (and not allowed anyway)
    "def broken(:\n",                        # the syntax check answers this one
])
def test_gpu_only_reason_is_none_for_interpreter_code(source):
    assert gpu_only_reason(source) is None


def test_needs_gpu_is_a_documented_failure_class():
    assert "needs_gpu" in FAILURE_CLASSES
    doc = (ROOT / "evaluator" / "failures.py").read_text()
    assert "``needs_gpu``" in ast.get_docstring(ast.parse(doc))


def test_the_seed_has_a_literal_config_inside_its_search_space():
    tree = ast.parse(SEED.read_text())
    lits = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name) and t.id in ("CONFIG", "SEARCH_SPACE")}
    config, space = lits["CONFIG"], lits["SEARCH_SPACE"]
    # per shape class (evolve/operators/shape_classes.py), like seeds/gqa.py
    assert set(config) == set(space) == {"D64_NC", "D64_C", "D128_NC", "D128_C"}
    for cls, knobs in config.items():
        assert set(knobs) == set(space[cls]), cls
        for knob, value in knobs.items():
            assert value in space[cls][knob], (cls, knob)


@NO_GPU
def test_evaluating_the_gluon_seed_without_a_gpu_answers_needs_gpu():
    t0 = time.monotonic()
    res = evaluate(SEED, "gqa")
    assert res.status == "rejected"
    assert res.failure.cls == "needs_gpu", res.failure
    assert "needs a CUDA GPU" in res.failure.message and "Gluon" in res.failure.message
    assert res.device == "interpreter" and res.score is None and res.shapes == []
    assert time.monotonic() - t0 < 30   # answered before any worker process starts


@NO_GPU
def test_a_cheating_gluon_file_is_forbidden_before_the_gpu_question(tmp_path):
    bad = tmp_path / "cheat.py"
    bad.write_text(_candidate("s = torch.matmul(q, k.transpose(-1, -2))"))
    res = evaluate(bad, "gqa")
    assert res.status == "rejected" and res.failure.cls == "forbidden", res.failure


@NO_GPU
def test_compare_with_a_gluon_side_without_a_gpu_answers_needs_gpu():
    cmp = compare_candidates(ROOT / "seeds" / "gqa.py", SEED, "gqa")
    assert cmp.failure is not None
    assert cmp.failure["class"] == "needs_gpu" and cmp.failure["side"] == "champion", cmp.failure
    assert cmp.better is False


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "evolve", "eval", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


@NO_GPU
def test_cli_eval_of_the_gluon_seed_exits_1_and_says_a_gpu_is_needed():
    r = _cli(str(SEED))
    assert r.returncode == 1, (r.stdout, r.stderr)
    text = " ".join(r.stdout.split())   # rich may wrap the line
    assert "rejected needs_gpu" in text and "needs a CUDA GPU" in text, r.stdout
    assert "Traceback" not in r.stdout + r.stderr

    r = _cli(str(SEED), "--json")
    assert r.returncode == 1
    res = json.loads(r.stdout)
    assert res["status"] == "rejected" and res["failure"]["class"] == "needs_gpu"


@pytest.mark.gpu
def test_the_gluon_seed_passes_the_quick_suite_on_a_gpu():
    r = _cli(str(SEED), "--suite", "quick", "--json")
    res = json.loads(r.stdout)
    if res["status"] != "ok" and "compute capability 9" in json.dumps(res["failure"]):
        pytest.skip("the Gluon seed targets Hopper (sm_90) only")
    assert r.returncode == 0 and res["status"] == "ok", res["failure"]
    assert res["device"] == "cuda" and res["score"] > 0
    assert res["validation"]["passed"] == res["validation"]["checked"] > 0
