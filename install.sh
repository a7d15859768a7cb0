#!/usr/bin/env bash
# Installs evolve, its dependencies and its test tools into the active Python environment
# (a virtual environment is recommended). An existing PyTorch is kept. Without one:
# on a machine with an NVIDIA driver, PyPI's CUDA build of torch; without a GPU, the
# CPU-tested pair torch 2.13.0 + triton 3.6.0 (the tests run Triton's CPU interpreter,
# which this pair is tested with).
#
#   bash install.sh        # evolve + test tools
#   bash install.sh ray    # also Ray, for `evolve start --executor ray` (every node of a
#                          # Ray cluster needs this same environment)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
EXTRAS=dev
for arg in "$@"; do
  case "$arg" in
    ray) EXTRAS="$EXTRAS,ray" ;;
    *) echo "install.sh: unknown option '$arg' (known: ray)" >&2; exit 2 ;;
  esac
done

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    "$PY" -m pip install torch
  else
    "$PY" -m pip install torch==2.13.0 triton==3.6.0
  fi
fi
if ! "$PY" -c "import triton" >/dev/null 2>&1; then
  "$PY" -m pip install triton==3.6.0
fi
"$PY" -m pip install -e ".[$EXTRAS]"
"$PY" -c "import evolve, evaluator, torch, triton; print('evolve installed: torch', torch.__version__, 'triton', triton.__version__)"
if [[ ",$EXTRAS," == *",ray,"* ]]; then
  "$PY" -c "import ray; print('ray', ray.__version__, '(--executor ray)')"
fi
