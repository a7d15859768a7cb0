"""Target ``gqa``: grouped-query attention forward (Hq % Hkv == 0), bf16 on the GPU.

A plugin file (format: evaluator/targets/plugin.py); the shape, inputs, reference and
baselines are shared with ``mha`` in evaluator/targets/prefill.py.
"""

from evaluator.targets.prefill import (  # noqa: F401 - plugin attributes
    CONTRACT, KINDS, GQA_CPU_VALIDATION, GQA_GPU_VALIDATION, GQA_HEADS, GQA_QUICK, GQA_QUICK_VALIDATION,
    SMOKE_GQA, Shape, baselines, default_suite, empty_inputs, flops, lowp, make_inputs, reference)

NAME = "gqa"
DESCRIPTION = "grouped-query attention forward (Hq % Hkv == 0), bf16 on GPU"
SUITES = {"smoke": SMOKE_GQA, "quick": GQA_QUICK, "default": default_suite(GQA_HEADS)}
VALIDATION = {"cpu": GQA_CPU_VALIDATION, "gpu": GQA_GPU_VALIDATION, "quick": GQA_QUICK_VALIDATION}
BASELINES = baselines()
EXPORT_WRAPPER = "prefill"
