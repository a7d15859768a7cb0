"""One call of the Gluon seed and of SDPA-cuDNN on one gqa shape, for Nsight Compute (issue 20).

    ncu --section SpeedOfLight ... -k regex:'attn|fmha|flash|cudnn' python3 benchmarks/gpu/gluon_profile.py [S] [D] [causal]

``KERNEL=path`` profiles another Gluon kernel file instead of the seed (a variant).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_util as bu  # noqa: E402  (puts the repo root on sys.path)


def main() -> None:
    import torch

    from evaluator import baselines, inputs
    from evaluator.targets import Shape

    S = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
    D = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    causal = len(sys.argv) > 3 and sys.argv[3] == "causal"
    shape = Shape(B=16384 // S, Hq=32, Hkv=8, S=S, D=D, causal=causal)
    q, k, v = inputs.make_inputs(shape, 1, "gaussian", "cuda")
    mod = bu.load_kernel(os.environ.get("KERNEL") or bu.REPO / "seeds" / "gqa_gluon.py")
    cudnn = baselines.get_baseline("cudnn")
    for fn in (mod.attention, cudnn):
        fn(q, k, v, causal=causal)
    torch.cuda.synchronize()
    print("profiled", shape.name)


if __name__ == "__main__":
    main()
