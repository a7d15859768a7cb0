"""Hardware/software fingerprint of a run, gathered without initialising CUDA here.

GPU facts come from `evaluator.gpu_available()` and a subprocess that imports torch and
triton; the orchestrator process itself never touches CUDA.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
from typing import Any

from evolve.paths import REPO_ROOT

_PROBE = r"""
import json, torch, triton
info = {"torch": torch.__version__, "triton": triton.__version__,
        "cuda": torch.version.cuda, "cudnn": None, "gpu": None, "gpu_count": 0,
        "capability": None}
if torch.cuda.is_available():
    info["gpu_count"] = torch.cuda.device_count()
    info["gpu"] = torch.cuda.get_device_name(0)
    info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    info["cudnn"] = str(torch.backends.cudnn.version())
print(json.dumps(info))
"""


def _probe_torch(timeout_s: float = 120) -> dict[str, Any]:
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=timeout_s, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
        return {"probe_error": f"{type(e).__name__}: {e}"[:300]}


def _first_line(cmd: list[str], timeout_s: float) -> str | None:
    """The first line a command prints (None when it fails or prints nothing)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                             check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return out.splitlines()[0] if out else None


def collect(gpu: bool) -> dict[str, Any]:
    """The fingerprint stored in run.toml and the runs table (None values are dropped)."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu_available": gpu,
        "project_commit": _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], 10),
    }
    info.update(_probe_torch())
    if gpu:
        info["driver"] = _first_line(["nvidia-smi", "--query-gpu=driver_version",
                                      "--format=csv,noheader"], 30)
    return {k: v for k, v in info.items() if v is not None}
