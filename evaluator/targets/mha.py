"""Target ``mha``: multi-head attention forward (Hq == Hkv), bf16 on the GPU.

A plugin file (format: evaluator/targets/plugin.py); the same covering sets as ``gqa``
with Hkv = Hq (evaluator/targets/prefill.py).
"""

from evaluator.targets.prefill import (  # noqa: F401 - plugin attributes
    CONTRACT, KINDS, GQA_CPU_VALIDATION, GQA_GPU_VALIDATION, GQA_QUICK_VALIDATION, MHA_HEADS, MHA_QUICK,
    SMOKE_MHA, Shape, baselines, default_suite, empty_inputs, flops, lowp, make_inputs, mha_only,
    reference)

NAME = "mha"
DESCRIPTION = "multi-head attention forward (Hq == Hkv), bf16 on GPU"
SUITES = {"smoke": SMOKE_MHA, "quick": MHA_QUICK, "default": default_suite(MHA_HEADS)}
VALIDATION = {"cpu": mha_only(GQA_CPU_VALIDATION), "gpu": mha_only(GQA_GPU_VALIDATION),
              "quick": mha_only(GQA_QUICK_VALIDATION)}
BASELINES = baselines()
EXPORT_WRAPPER = "prefill"
