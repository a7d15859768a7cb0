"""CPU tests of the benchmark tooling: `evolve bench` usage errors, table/SVG helpers,
the seed sweep's config variants (GPU-only parts are exercised by the lead on a GPU)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from evolve.cli import build_app

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_util  # noqa: E402
import compare  # noqa: E402
import seed_sweep  # noqa: E402


def _literal(path: Path, name: str):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {path}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_evolve_bench_without_gpu_exits_2_with_one_line():
    res = CliRunner().invoke(build_app(), ["bench", str(REPO / "seeds" / "gqa.py"),
                                           "--target", "gqa"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0]


def test_evolve_bench_usage_errors():
    app = build_app()
    res = CliRunner().invoke(app, ["bench", "no/such/kernel.py"])
    assert res.exit_code == 2 and "kernel file not found" in res.output
    res = CliRunner().invoke(app, ["bench", str(REPO / "seeds" / "gqa.py"), "--target", "nope"])
    assert res.exit_code == 2 and "unknown target" in res.output
    res = CliRunner().invoke(app, ["bench", str(REPO / "seeds" / "gqa.py"), "--suite", "nope"])
    assert res.exit_code == 2 and "no suite" in res.output
    res = CliRunner().invoke(app, ["bench", str(REPO / "seeds" / "gqa.py"), "--rounds", "0"])
    assert res.exit_code == 2 and "--rounds" in res.output
    assert compare.main([str(REPO / "seeds" / "gqa.py"), "--rounds", "0"]) == 2


def test_compare_script_without_gpu_exits_2(capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the no-GPU path")
    assert compare.main([str(REPO / "seeds" / "gqa.py")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_numbers_and_table():
    assert bench_util.tflops(2e12, 1000.0) == pytest.approx(2.0)
    assert bench_util.tflops(1e12, None) is None
    text = bench_util.table(["shape", "a"], [["S=1", "1.0"], ["S=1000", "22.5"]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(ln) for ln in lines}) == 1


def test_gpu_runner_usage_and_tools_exist():
    """benchmarks/gpu/run.sh: unknown subcommands print the usage (exit 2) before any setup,
    and every script it calls is in the tree."""
    runner = REPO / "benchmarks" / "gpu" / "run.sh"
    res = subprocess.run(["bash", str(runner), "nope"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "compare [KERNEL...]" in res.stdout
    scripts = set(re.findall(r"benchmarks/[\w/]+\.py", runner.read_text()))
    assert len(scripts) >= 5 and all((REPO / s).is_file() for s in scripts), scripts
    assert not list((REPO / "benchmarks").rglob("session*.sh"))


def test_benchmarks_hold_results_not_raw_records():
    """Raw session records (lineage DBs, tarballs, logs, plots) live in git history; what
    stays is small and every result folder the README lists exists."""
    files = [p for p in (REPO / "benchmarks").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 1_000_000
    assert not [p for p in files if p.suffix in {".db", ".tgz", ".log", ".svg"}]
    readme = (REPO / "benchmarks" / "results" / "README.md").read_text()
    folders = set(re.findall(r"`(2026-[\w.-]+)/`", readme))
    assert folders and all((REPO / "benchmarks" / "results" / f).is_dir() for f in folders), folders


def test_svg_chart_is_valid_and_has_one_bar_per_value():
    svg = bench_util.svg_bar_chart("t <&>", ["s1", "s2", "s3"],
                                   {"gqa": [500.0, None, 420.5], "SDPA-cuDNN": [600.0, 550.0, 1.0]})
    root = ET.fromstring(svg)
    bars = [el for el in root.iter("{http://www.w3.org/2000/svg}rect") if el.find(
        "{http://www.w3.org/2000/svg}title") is not None]
    assert len(bars) == 5  # one missing value draws nothing
    heights = sorted(float(b.get("height")) for b in bars)
    assert heights[-1] > heights[0] > 0


def test_compare_labels_are_unique():
    paths = [Path("a/kernel.py"), Path("b/kernel.py"), Path("c/other.py")]
    assert compare._labels(paths) == ["a/kernel", "b/kernel", "other"]


@pytest.mark.parametrize("n,rounds", [(1, 3), (3, 3), (4, 3), (4, 8), (5, 1)])
def test_compare_schedule_is_interleaved_and_rotated(n, rounds):
    names = [f"c{i}" for i in range(n)]
    order = compare.schedule(names, 2, rounds)
    assert len(order) == 2 * n * rounds
    assert [s for s, _ in order] == [0] * (n * rounds) + [1] * (n * rounds)  # shape by shape
    for shape in (0, 1):
        seq = [c for s, c in order if s == shape]
        rounds_ = [seq[r * n:(r + 1) * n] for r in range(rounds)]
        for r, block in enumerate(rounds_):
            assert sorted(block) == names               # everyone once per round
            assert block[0] == names[r % n]             # round r starts at contestant r mod n
        for c in names:
            assert seq.count(c) == rounds
            positions = [block.index(c) for block in rounds_]
            assert len(set(positions[:n])) == min(rounds, n)  # a new position every round
            if rounds >= n:                                   # ... so each one is taken
                assert set(positions) == set(range(n))


def test_compare_interleaved_run_without_gpu(monkeypatch, capsys):
    """run_interleaved on a fake Comparison: checks before timing, rotated rounds per shape,
    median of rounds, peers first in ms, a failing contestant gets None on that shape."""
    from types import SimpleNamespace as NS

    calls = []
    cmp = compare.Comparison.__new__(compare.Comparison)
    cmp.shapes = [NS(name=f"s{i}", flops=lambda: 1e12) for i in range(2)]
    cmp.peers = ["cudnn", "flash"]
    cmp.target = NS(flops=lambda shape: shape.flops(), entry="attention")
    cmp.ms, cmp.checks, cmp.errors = {}, {}, []
    peer_fns = {"cudnn": lambda: "cudnn", "flash": lambda: "flash"}
    cmp.bl = NS(get_baseline=lambda name: peer_fns[name])
    kern = lambda: "k"  # noqa: E731
    monkeypatch.setattr(compare.bu, "load_kernel", lambda path, label: NS(attention=kern))
    ms = {"cudnn": [1.0, 3.0, 2.0], "flash": [5.0, 4.0, 6.0], "k": [2.0, 2.0, 9.0]}

    def fake_time(fn, shape):
        who = fn()
        if who == "flash" and shape.name == "s1":
            raise RuntimeError("refused")
        calls.append(("time", shape.name, who))
        return ms[who][calls.count(("time", shape.name, who)) - 1]

    def fake_check(fn, shape):
        calls.append(("check", shape.name, fn()))
        return {"ok": True}

    cmp._time, cmp.check = fake_time, fake_check
    cmp.run_interleaved([("k", Path("k.py"))], rounds=3)
    s0 = [c for c in calls if c[1] == "s0"]
    assert s0[0] == ("check", "s0", "k")
    assert [c[2] for c in s0[1:]] == ["cudnn", "flash", "k", "flash", "k", "cudnn",
                                       "k", "cudnn", "flash"]
    assert list(cmp.ms) == ["SDPA-cuDNN", "SDPA-flash", "k"]
    assert cmp.ms["SDPA-cuDNN"] == {"s0": 2.0, "s1": 2.0}
    assert cmp.ms["SDPA-flash"] == {"s0": 5.0, "s1": None}
    assert cmp.ms["k"] == {"s0": 2.0, "s1": 2.0}
    assert cmp.checks["k"] == {"s0": {"ok": True}, "s1": {"ok": True}}
    assert [e["provider"] for e in cmp.errors] == ["flash"]


def test_compare_check_judges_a_kernel_on_the_evaluators_inputs():
    """Comparison.check for real (interpreter, fp16, tiny shapes): a correct kernel passes,
    a wrong one fails, on inputs built as the evaluator's timed inputs (the GPU path calls
    the same code with device "cuda")."""
    from evaluator.targets.prefill import Shape

    cmp = compare.Comparison("gqa", "quick", None)
    cmp.device = "cpu"
    cmp.shapes = [Shape(1, 4, 2, 40, 32, causal, "float16") for causal in (False, True)]
    naive = bench_util.load_kernel(REPO / "seeds" / "gqa_naive.py", "naive_check").attention
    for shape in cmp.shapes:
        got = cmp.check(naive, shape)
        assert got["ok"] and got["ratio"] < 1, got
    wrong = lambda q, k, v, **kw: naive(q, k, v, **kw) * 1.05  # noqa: E731
    assert not cmp.check(wrong, cmp.shapes[0])["ok"]


@pytest.mark.parametrize("seed", seed_sweep.TUNED)
def test_sweep_variants_stay_inside_the_search_space(seed):
    path = REPO / "seeds" / seed
    config, space = _literal(path, "CONFIG"), _literal(path, "SEARCH_SPACE")
    for cls, variants in seed_sweep.VARIANTS.items():
        assert any(seed_sweep.apply_variant(config, cls, v) == config for v in variants[:2]), \
            f"{seed}'s shipped {cls} default should be one of the first two variants"
        for variant in variants:
            new = seed_sweep.apply_variant(config, cls, variant)
            assert set(new) == set(config)
            if isinstance(new.get(cls), dict):  # a per-class CONFIG: knobs and space per class
                new, space_cls = new[cls], space[cls]
                assert set(new) == set(config[cls])
            else:
                space_cls = space
            for key, value in new.items():
                assert value in space_cls[key], (cls, variant[0], key, value)


@pytest.mark.gpu
def test_compare_on_gpu_writes_json_and_svg(tmp_path):
    rc = compare.main([str(REPO / "seeds" / "gqa.py"), "--target", "gqa", "--suite", "quick",
                       "--peers", "cudnn", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads(next(tmp_path.glob("compare-gqa-quick-*.json")).read_text())
    assert set(data["ms"]) == {"gqa", "SDPA-cuDNN"}
    assert data["order"] == "interleaved" and data["rounds"] == 3
    assert all(v is not None and v > 0 for v in data["ms"]["gqa"].values())
    assert all(c["ok"] for c in data["checks"]["gqa"].values())
    ET.fromstring(next(tmp_path.glob("compare-gqa-quick-*.svg")).read_text())


@pytest.mark.gpu
def test_seed_sweep_correctness_part_on_gpu(tmp_path):
    out = tmp_path / "sweep.json"
    assert seed_sweep.main([str(out), "--seeds", "gqa.py", "--no-tune", "--kinds", "gaussian"]) == 0
    data = json.loads(out.read_text())
    assert data["correctness"] and all(r["ok"] for r in data["correctness"])
    assert not data["errors"]
