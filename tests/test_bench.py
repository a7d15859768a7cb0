"""CPU tests of the benchmark tooling: `evolve bench` usage errors, table/SVG helpers,
the seed sweep's config variants (GPU-only parts are exercised by the lead on a GPU)."""

from __future__ import annotations

import ast
import json
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


def test_compare_script_without_gpu_exits_2(capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the no-GPU path")
    assert compare.main([str(REPO / "seeds" / "gqa.py")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_numbers_and_table():
    assert bench_util.tflops(2e12, 1000.0) == pytest.approx(2.0)
    assert bench_util.tflops(1e12, None) is None
    assert bench_util.geomean([1.0, 4.0, None]) == pytest.approx(2.0)
    assert bench_util.geomean([None]) is None
    text = bench_util.table(["shape", "a"], [["S=1", "1.0"], ["S=1000", "22.5"]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(ln) for ln in lines}) == 1


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
            for key, value in new.items():
                assert value in space[key], (cls, variant[0], key, value)


@pytest.mark.gpu
def test_compare_on_gpu_writes_json_and_svg(tmp_path):
    rc = compare.main([str(REPO / "seeds" / "gqa.py"), "--target", "gqa", "--suite", "quick",
                       "--peers", "cudnn", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads(next(tmp_path.glob("compare-gqa-quick-*.json")).read_text())
    assert set(data["ms"]) == {"gqa", "SDPA-cuDNN"}
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
