"""Targets: suites, validation coverage, FLOP formula, lookup errors (no torch needed)."""

from __future__ import annotations

import math

import pytest

from evaluator import get_target, list_targets
from evaluator.targets import Shape, UnknownTarget


def test_targets_listed():
    assert {t.name for t in list_targets()} == {"gqa", "mha", "decode"}
    with pytest.raises(UnknownTarget):
        get_target("nope")


def test_gqa_default_suite_is_the_issue_grid():
    shapes = get_target("gqa").suite("default")
    assert len(shapes) == 4 * 3 * 2
    assert {(s.Hq, s.Hkv, s.D) for s in shapes} == {(32, 8, 128), (64, 8, 128), (28, 4, 128), (32, 8, 64)}
    assert {s.S for s in shapes} == {1024, 4096, 16384}
    assert all(s.B * s.S == 16384 and s.dtype == "bfloat16" for s in shapes)
    assert {s.causal for s in shapes} == {False, True}


def test_mha_and_quick_and_smoke():
    mha = get_target("mha")
    assert all(s.Hq == s.Hkv == 32 for s in mha.suite("default"))
    assert {s.D for s in mha.suite("default")} == {64, 128}
    for t in list_targets():
        assert len(t.suite("quick")) == 4
        smoke = t.suite("smoke")
        assert all(s.dtype == "float16" and s.S <= 128 for s in smoke)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_validation_covers_the_issue_values(device):
    shapes = get_target("gqa").validation_shapes(device)
    assert all(s.Hq % s.Hkv == 0 for s in shapes)
    assert {s.causal for s in shapes} == {False, True}
    assert {s.D for s in shapes} == {64, 128}
    assert any(s.sm_scale is not None for s in shapes)
    assert any(s.layout == "bshd" for s in shapes)
    assert any(s.Hkv > 1 and s.G > 1 for s in shapes)  # catches kv_head = q_head
    if device == "cuda":
        assert {1, 17, 127, 1000, 3001} <= {s.S for s in shapes}
        assert {1, 2, 3} <= {s.B for s in shapes}
        assert {1, 4, 7, 8} <= {s.G for s in shapes if s.Hkv == 1}
        assert 12 <= len(shapes) <= 20
    else:
        assert {1, 17, 127} <= {s.S for s in shapes}
        assert {1, 4, 7, 8} <= {s.G for s in shapes if s.Hkv == 1}
        assert all(s.dtype == "float16" for s in shapes)
    assert all(s.G == 1 for s in get_target("mha").validation_shapes(device))


def test_flops_and_names():
    s = Shape(2, 8, 2, 1024, 128, False)
    assert s.flops() == 4 * 2 * 8 * 1024 * 1024 * 128
    assert Shape(2, 8, 2, 1024, 128, True).flops() == s.flops() / 2
    assert s.scale == pytest.approx(1 / math.sqrt(128))
    assert Shape(1, 1, 1, 1, 64, False, sm_scale=0.3).scale == 0.3
    assert Shape.from_dict(s.to_dict()) == s
    assert len({x.name for x in get_target("gqa").validation_shapes("cuda")}) == 16
