"""End-to-end evaluations on the CPU interpreter (smoke suite): the honest kernel passes,
each broken candidate in tests/candidates/ is rejected with its failure class.

All evaluations run once, in parallel, in a module fixture (each is its own worker and
checker process); the tests then assert on the cached results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from evaluator import EvalOptions, EvalResult, compare_candidates, evaluate

from candidates.make import PATCHES, source
from candidates.make import path as cand

ROOT = Path(__file__).resolve().parent.parent

# candidate -> accepted failure classes
EXPECTED = {
    "wrong_numbers": {"mismatch"},
    "nan_output": {"nonfinite"},
    "ignores_causal": {"mismatch"},
    "ignores_scale": {"mismatch"},
    "assumes_mha": {"mismatch"},
    "syntax_error": {"syntax"},
    "import_error": {"import"},
    "infinite_loop": {"timeout"},
    "segfault": {"runtime"},
    "wrong_shape": {"contract"},
    "wrong_dtype": {"contract"},
    "no_attention": {"contract"},
    "mean_v": {"mismatch"},
    "unwritten": {"unwritten", "nonfinite", "mismatch"},  # poison reuse is best effort
    "mutates_input": {"mutation"},
    "returns_input": {"contract"},
    "nondeterministic": {"nondeterministic"},
}


def _cli_honest() -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "evolve.cli", "eval", str(cand("honest")),
                        "--target", "gqa", "--suite", "smoke", "--json"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    return r.returncode, r.stdout, r.stderr


def _job(name: str):
    if name == "cli_honest":
        return _cli_honest()
    if name == "aa_repeat":
        return evaluate(cand("honest"), "gqa", "smoke", EvalOptions(repeat=2))
    if name == "compare":
        return compare_candidates(cand("honest"), cand("honest"), "gqa", "smoke",
                                  EvalOptions(), rounds=2)
    if name == "compare_bad":
        return compare_candidates(cand("honest"), cand("import_error"), "gqa", "smoke",
                                  EvalOptions(), rounds=2)
    if name == "aborts":
        return evaluate(cand("aborts"), "gqa", "smoke", EvalOptions(static_check=False))
    timeout = 40.0 if name == "infinite_loop" else 600.0
    return evaluate(cand(name), "gqa", "smoke", EvalOptions(timeout_s=timeout))


@pytest.fixture(scope="module")
def results():
    names = ["cli_honest", "infinite_loop", "aa_repeat", "compare", "aborts", "compare_bad", *EXPECTED]
    names = list(dict.fromkeys(names))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(names, pool.map(_job, names)))


def test_generated_candidates_are_honest_py_patched():
    """Every broken candidate in the table is covered by EXPECTED or the GPU tests, compiles,
    and differs from honest.py only where its patch says."""
    honest = cand("honest").read_text()
    gpu_only = {"gpu_illegal_address", "gpu_oom"}
    assert set(PATCHES) <= set(EXPECTED) | gpu_only
    for name in PATCHES:
        src = source(name)
        compile(src, f"{name}.py", "exec")
        assert src != honest and cand(name).read_text() == src
        body = honest[honest.index('"""', 3) + 3:]
        for old, new in PATCHES[name][1]:
            body = body.replace(old, new)
        assert src.endswith(body)


def test_honest_cli_json_ok(results):
    rc, out, err = results["cli_honest"]
    assert rc == 0, err
    d = json.loads(out)  # stdout is exactly the JSON
    res = EvalResult.from_dict(d)
    assert res.status == "ok" and d["failure"] is None and res.score > 0
    assert d["device"] == "interpreter" and "NOT GPU performance" in d["timing"]
    assert d["primary_baseline"] == "sdpa-cpu"
    assert len(d["shapes"]) == 2
    for s in d["shapes"]:
        for key in ("ms", "tflops", "baseline_ms", "speedup", "error", "error_ratio"):
            assert s[key] is not None and s[key] >= 0, key
    assert d["validation"]["checked"] == d["validation"]["passed"] >= 5
    assert d["validation"]["max_error_ratio"] <= 2.0
    for key in ("gpu", "driver", "torch", "triton", "isolation"):
        assert key in d["env"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_candidate_rejected(results, name):
    res = results[name]
    assert res.status == "rejected", res.to_json()
    assert res.failure.cls in EXPECTED[name], res.failure
    assert res.score is None


def test_abort_is_runtime(results):
    res = results["aborts"]
    assert res.status == "rejected"
    # the runtime guard may refuse `import os` before the abort happens
    assert res.failure.cls in {"runtime", "forbidden"}, res.failure
    if res.failure.cls == "runtime":
        assert "SIGABRT" in res.failure.message


def test_forbidden_by_static_check():
    res = evaluate(cand("aborts"), "gqa", "smoke")
    assert res.status == "rejected" and res.failure.cls == "forbidden"
    assert "os" in res.failure.message


def test_aa_repeat_reports_spread(results):
    res = results["aa_repeat"]
    assert res.ok, res.to_json()
    assert len(res.repeats) == 2 and all(x > 0 for x in res.repeats)


def test_compare_same_kernel_is_not_better(results):
    cmp = results["compare"]
    assert cmp.failure is None, cmp
    assert cmp.challenger_score and cmp.champion_score
    assert len(cmp.per_round) == 2
    assert cmp.better is False or cmp.ratio > 1 + max(cmp.noise, 0.01)


def test_compare_names_the_failing_side(results):
    cmp = results["compare_bad"]
    assert cmp.better is False and cmp.ratio is None
    assert cmp.failure == {"side": "champion", "class": "import", "message": cmp.failure["message"]}


def test_usage_errors_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "evolve.cli", "eval", str(tmp_path / "missing.py")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "not found" in r.stderr and r.stdout == ""
    r = subprocess.run([sys.executable, "-m", "evolve.cli", "eval", str(cand("honest")),
                        "--target", "nope"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "unknown target" in r.stderr


def test_syntax_error_cli_exit_1():
    r = subprocess.run([sys.executable, "-m", "evolve.cli", "eval", str(cand("syntax_error")),
                        "--suite", "smoke", "--json"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 1
    assert json.loads(r.stdout)["failure"]["class"] == "syntax"
