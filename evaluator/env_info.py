"""Software/hardware fingerprint of the worker (collected before the candidate is imported)."""

from __future__ import annotations

import platform
import socket
import sys
from pathlib import Path
from typing import Any


def collect(device: str) -> dict[str, Any]:
    import torch
    import triton

    info: dict[str, Any] = {
        "gpu": None, "driver": None, "cuda": torch.version.cuda, "torch": torch.__version__,
        "triton": triton.__version__, "python": platform.python_version(),
        "hostname": socket.gethostname(), "platform": sys.platform,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["sm_count"] = props.multi_processor_count
        info["memory_gib"] = round(props.total_memory / 2**30, 1)
        info["capability"] = f"{props.major}.{props.minor}"
        info["driver"] = _driver_version()
    else:
        info["interpreter"] = "TRITON_INTERPRET=1"
    return info


def _driver_version() -> str | None:
    """NVIDIA kernel-module version from /proc (no CUDA initialisation)."""
    p = Path("/proc/driver/nvidia/version")
    try:
        first = p.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    for tok in first.split():
        if tok[:1].isdigit() and "." in tok:
            return tok
    return first.strip()


# Dense bf16/fp16 tensor peaks (TFLOP/s) used by the plausibility bound.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "GH200": 989.0, "A100": 312.0,
               "L40S": 362.0, "L4": 121.0, "A10": 125.0, "B200": 2250.0}
DEFAULT_PEAK = 989.0


def peak_tflops(gpu_name: str | None) -> float:
    """Dense bf16 peak of the card; H100/H200 -> 989. Unknown cards -> 989 (H100's)."""
    if not gpu_name:
        return DEFAULT_PEAK
    up = gpu_name.upper()
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in up:
            return PEAK_TFLOPS[key]
    return DEFAULT_PEAK
