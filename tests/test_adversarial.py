"""The adversarial suite: every cheating candidate in tests/adversarial/ is rejected with its
expected class, and the honest controls pass.

Each file declares, as module-level literals (read with ``ast``; the files are never
imported here):

* ``EXPECTED`` - the class ``evaluate(path, "gqa", "smoke")`` must give ("ok" = pass);
* ``GPU_ONLY`` - the hack needs CUDA;
* ``RUNTIME`` (optional) - the outcome under the runtime guard alone, i.e. when the
  static check is bypassed (tests/guard_harness.py; "forbidden" or "contract");
* ``RUNTIME_PIPELINE`` (optional) - the class of ``evaluate(..., static_check=False)``
  when that differs from RUNTIME (GPU-only routes such as the side stream), and
  ``RUNTIME_ALSO`` further classes that are equally right there;
* ``ALSO_ACCEPTED`` (optional) - further classes that are equally right, with the
  reason in the file's docstring.

Three tiers keep CI short: the static check over every file (instant), the guard over
the RUNTIME files (one process, a fork per file), and full evaluations only for the
candidates the static check cannot reject (plus the honest controls).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator.static_check import check_source, gpu_only_reason

ROOT = Path(__file__).resolve().parent.parent
ADV = ROOT / "tests" / "adversarial"
HARNESS = ROOT / "tests" / "guard_harness.py"
HAS_CUDA = __import__("torch").cuda.is_available()


def _meta(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    meta = {"EXPECTED": None, "GPU_ONLY": False, "RUNTIME": None, "RUNTIME_PIPELINE": None,
            "ALSO_ACCEPTED": (), "RUNTIME_ALSO": (),
            "doc": ast.get_docstring(tree) or "", "path": path}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in meta:
                meta[node.targets[0].id] = ast.literal_eval(node.value)
    return meta


CASES = {p.stem: _meta(p) for p in sorted(ADV.glob("*.py"))}
STATIC_CLEAN = [n for n, m in CASES.items() if m["EXPECTED"] != "forbidden"]
GUARDED = [n for n, m in CASES.items() if m["RUNTIME"] or m["EXPECTED"] == "ok"]
SEEDS = sorted((ROOT / "seeds").glob("*.py"))
GPU_SEEDS = {p.stem for p in SEEDS if gpu_only_reason(p.read_text())}  # Gluon: Hopper only


def _gpu_mark(name: str) -> list:
    return [pytest.mark.gpu] if CASES[name]["GPU_ONLY"] else []


def test_suite_composition():
    cheats = [n for n, m in CASES.items() if m["EXPECTED"] != "ok"]
    assert len(cheats) >= 15, cheats
    assert CASES["honest_plain"]["EXPECTED"] == "ok" and CASES["honest_slow"]["EXPECTED"] == "ok"
    from evaluator import FAILURE_CLASSES

    for name, m in CASES.items():
        src = m["path"].read_text()
        assert m["EXPECTED"] == "ok" or m["EXPECTED"] in FAILURE_CLASSES, name
        assert "@triton.jit" in src and "def attention(" in src, name
        assert m["doc"], f"{name}: the header docstring must name the hack and the expected class"
        if m["EXPECTED"] != "ok":
            assert f"``{m['EXPECTED']}``" in m["doc"], f"{name}: docstring does not name {m['EXPECTED']}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_static_tier(name):
    m = CASES[name]
    found = check_source(m["path"].read_text(), m["path"].name)
    if m["EXPECTED"] == "forbidden":
        assert found, f"{name} passed the static check"
    else:
        assert found == [], f"{name}: unexpected violations {found}"


@pytest.fixture(scope="module")
def guard_outcomes(tmp_path_factory):
    names = [n for n in GUARDED if not CASES[n]["GPU_ONLY"] or HAS_CUDA]
    seeds = [p for p in SEEDS if p.stem not in GPU_SEEDS or HAS_CUDA]
    paths = [CASES[n]["path"] for n in names] + seeds
    names += [f"seed:{p.stem}" for p in seeds]
    base = tmp_path_factory.mktemp("guard")
    r = subprocess.run([sys.executable, str(HARNESS), str(base), *map(str, paths)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            stem = Path(d["file"]).stem
            out[stem if stem in CASES else f"seed:{stem}"] = d
    assert set(out) == set(names), r.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=_gpu_mark(n)) for n in GUARDED])
def test_guard_tier(name, guard_outcomes):
    m = CASES[name]
    want = m["RUNTIME"] or "ok"
    got = guard_outcomes[name]
    assert got["outcome"] == want, got


@pytest.mark.parametrize("seed", [pytest.param(p.stem, marks=[pytest.mark.gpu] if p.stem in GPU_SEEDS else [])
                                  for p in SEEDS])
def test_guard_allows_the_seeds(seed, guard_outcomes):
    """No false positives of the runtime guard on the honest seed kernels."""
    assert guard_outcomes[f"seed:{seed}"]["outcome"] == "ok", guard_outcomes[f"seed:{seed}"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=_gpu_mark(n)) for n in STATIC_CLEAN])
def test_full_evaluation(name):
    from evaluator import evaluate

    m = CASES[name]
    res = evaluate(m["path"], target="gqa", suite="smoke")
    if m["EXPECTED"] == "ok":
        assert res.status == "ok", (res.failure, res.log_tail[-2000:])
        assert res.score is not None and res.score > 0
    else:
        assert res.status == "rejected", f"{name} was accepted (score {res.score})"
        assert res.failure.cls in (m["EXPECTED"], *m["ALSO_ACCEPTED"]), (res.failure, res.log_tail[-1500:])
    assert res.env.get("isolation")


RUNTIME_ON_GPU = [n for n, m in CASES.items() if m["RUNTIME_PIPELINE"] or (m["RUNTIME"] and m["RUNTIME"] != "ok")]


@pytest.mark.gpu
@pytest.mark.parametrize("name", RUNTIME_ON_GPU)
def test_runtime_pipeline_gpu(name):
    """On a GPU, the cheats the static check stops are also stopped by the real worker
    (guard, contract and timing checks) when the static check is switched off.

    The `quick` suite times real shapes (milliseconds per call): work hidden on another
    stream is then longer than the wall-clock slack and than the gap before the
    stream-ordered output sample, so the timing checks see it; on `smoke`'s microsecond
    shapes such a race could go either way."""
    from evaluator import EvalOptions, evaluate

    m = CASES[name]
    res = evaluate(m["path"], target="gqa", suite="quick", options=EvalOptions(static_check=False))
    assert res.status == "rejected", f"{name} was accepted without the static check (score {res.score})"
    want = (m["RUNTIME_PIPELINE"] or m["RUNTIME"], *m["RUNTIME_ALSO"])
    assert res.failure.cls in want, (res.failure, res.log_tail[-1500:])


def test_compare_guards_the_champion_side():
    """A rematch imports challenger and champion into one worker: the guard's stack rules
    apply to both files (with the static check off, the champion's ``sys._getframe`` is
    still denied)."""
    from evaluator import EvalOptions, compare_candidates

    res = compare_candidates(CASES["honest_plain"]["path"], CASES["frames_as_champion"]["path"],
                             "gqa", "smoke", EvalOptions(static_check=False, seed=5), rounds=2)
    assert res.failure is not None, "the champion's frame introspection was not stopped"
    assert res.failure["side"] == "champion" and res.failure["class"] == "forbidden", res.failure


def test_candidate_cannot_rewrite_the_worker_files(tmp_path):
    """With the static check off, candidate code that rewrites an output the checker will
    judge (torch.save: a C++ write, no audit event) or a rematch's champion source before
    it is imported is ``forbidden`` (the worker checks the digests of its files)."""
    from evaluator import EvalOptions, compare_candidates, evaluate

    src = CASES["rewrites_outputs"]["path"].read_text()
    res = evaluate(CASES["rewrites_outputs"]["path"], "gqa", "smoke", EvalOptions(static_check=False, seed=5))
    assert res.status == "rejected" and res.failure.cls == "forbidden", (res.failure, res.log_tail[-1500:])
    assert "check0_s0_r0.pt was changed" in res.failure.message, res.failure
    chal = tmp_path / "chal.py"  # at import, before the champion is imported
    chal.write_text(src.replace("    torch.save(o, OUTPUT)  # over an output the checker has not judged yet\n", "")
                    + '\ntorch.save(torch.zeros(1), "../candidate/kernel_1.py")\n')
    cmp = compare_candidates(chal, CASES["honest_plain"]["path"], "gqa", "smoke",
                             EvalOptions(static_check=False, seed=5), rounds=2)
    assert cmp.failure is not None and cmp.failure["class"] == "forbidden", cmp.failure
    assert cmp.failure["side"] == "challenger" and "kernel_1.py was changed" in cmp.failure["message"]
    probe = tmp_path / "k.py"  # only once timing runs (after 6 check calls): the end of the run sees it
    probe.write_text(src.replace("    torch.save(o, OUTPUT)", "    _CALLS.append(1)\n    if len(_CALLS) > 6:\n"
                                 "        torch.save(o, \"../out/time0_s0_p0_c0.pt\")")
                     + "\n_CALLS = []\n")
    res = evaluate(probe, "gqa", "smoke", EvalOptions(static_check=False, seed=5))
    assert res.failure is not None and res.failure.cls == "forbidden", res.failure
    assert "time0_s0_p0_c0.pt" in res.failure.message and "tampering" in res.failure.message, res.failure
    # a Python-level write there: the guard's audit hook says so at once
    probe.write_text(src.replace("torch.save(o, OUTPUT)", 'open(OUTPUT, "ab").close()'))
    res = evaluate(probe, "gqa", "smoke", EvalOptions(static_check=False, seed=5))
    assert res.failure is not None and res.failure.cls == "forbidden", res.failure
    assert "worker's own file" in res.failure.message, res.failure


def test_a_forged_phase1_file_does_not_start_the_checker(tmp_path):
    """``out/phase1.json`` tells the parent that the correctness outputs are complete. A
    candidate that creates it early (torch.save writes from C++: no audit event) must not
    get the checker to judge files of its choosing: the parent waits for the worker's own
    file (it carries a token the candidate never sees), and the worker reports the stray
    file as tampering."""
    from evaluator import EvalOptions, evaluate

    src = CASES["rewrites_outputs"]["path"].read_text()
    probe = tmp_path / "k.py"
    probe.write_text(src.replace("    torch.save(o, OUTPUT)  # over an output the checker has not judged yet\n", "")
                     + '\ntorch.save(torch.zeros(1), "../out/phase1.json")\n')
    res = evaluate(probe, "gqa", "smoke", EvalOptions(static_check=False, seed=5))
    assert res.status == "rejected" and res.failure.cls == "forbidden", (res.failure, res.log_tail[-1500:])
    assert "phase1.json" in res.failure.message and "missing" not in res.failure.message, res.failure
