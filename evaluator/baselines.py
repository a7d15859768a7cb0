"""Prefill baseline providers (the ``gqa``/``mha`` targets' BASELINES), and `resolve`,
which checks requested names against a target's. Timed in the worker BEFORE the
candidate is imported.

GPU: ``cudnn`` and ``flash`` are torch SDPA pinned to one backend with
``sdpa_kernel`` (``enable_gqa=True``); ``flex`` is ``torch.compile(flex_attention)``
with a causal block mask (compiles slowly: only when asked). A backend that refuses a
shape records ``None``. CPU: ``sdpa-cpu`` is torch SDPA (math) on fp32 copies; its
wall-clock times are NOT GPU performance.
"""

from __future__ import annotations

from typing import Callable

GPU_BASELINES = ("cudnn", "flash", "flex")
CPU_BASELINES = ("sdpa-cpu",)


def sdpa_backend(backend_name: str) -> Callable:
    import torch  # noqa: F401
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    backend = getattr(SDPBackend, backend_name)

    def run(q, k, v, *, causal: bool, sm_scale: float | None = None):
        with sdpa_kernel(backend):
            return sdpa(q, k, v, is_causal=causal, scale=sm_scale, enable_gqa=True)

    return run


def flex() -> Callable:
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    import torch._dynamo.config as dynamo_config

    # one compiled graph per suite shape: lift the default limit of 8 recompilations,
    # past which dynamo would silently fall back to eager flex_attention (slow, huge memory)
    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, knob):
            setattr(dynamo_config, knob, max(64, getattr(dynamo_config, knob)))
    compiled = torch.compile(flex_attention, dynamic=False)
    masks: dict[tuple[int, str], object] = {}

    def causal_mod(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    def run(q, k, v, *, causal: bool, sm_scale: float | None = None):
        mask = None
        if causal:
            key = (q.shape[2], str(q.device))
            if key not in masks:
                masks[key] = create_block_mask(causal_mod, None, None, q.shape[2], q.shape[2],
                                               device=q.device)
            mask = masks[key]
        return compiled(q, k, v, block_mask=mask, scale=sm_scale, enable_gqa=True)

    return run


def sdpa_cpu() -> Callable:
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    def run(q, k, v, *, causal: bool, sm_scale: float | None = None):
        return sdpa(q.float(), k.float(), v.float(), is_causal=causal, scale=sm_scale,
                    enable_gqa=True)

    return run


def get_baseline(name: str) -> Callable:
    if name == "cudnn":
        return sdpa_backend("CUDNN_ATTENTION")
    if name == "flash":
        return sdpa_backend("FLASH_ATTENTION")
    if name == "flex":
        return flex()
    if name == "sdpa-cpu":
        return sdpa_cpu()
    raise ValueError(f"unknown baseline {name!r} (known: {', '.join(GPU_BASELINES + CPU_BASELINES)})")


def resolve(target, names: tuple[str, ...] | list[str] | None, device: str) -> list[str]:
    """Baselines to time: None -> all of the target's for the device; the CPU always uses
    the target's CPU baselines (wall clock of the interpreter run, not GPU performance)."""
    known = list(target.baseline_names(device))
    if device != "cuda" or not names:
        return known
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown baseline(s) {', '.join(bad)} for target {target.name} "
                         f"(known: {', '.join(known)})")
    return list(names)
