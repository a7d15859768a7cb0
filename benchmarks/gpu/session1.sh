#!/usr/bin/env bash
# GPU session 1: seed correctness (bf16+fp16, every validation shape) and tile sweep,
# tolerance calibration, GPU evaluator tests (faults, adversarial), one default-suite
# evaluation of the seed with every baseline.
set -u
. benchmarks/gpu/setup.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv | tee $OUT/gpu.txt
python3 -c "import torch,triton;print('torch',torch.__version__,'triton',triton.__version__,'cudnn',torch.backends.cudnn.version())" | tee -a $OUT/gpu.txt
timeout 330 python3 benchmarks/seed_sweep.py $OUT/seed_sweep.json --max-configs 5 2>&1 | tee $OUT/seed_sweep.log | grep -vE "^\s*$" | tail -60
timeout 60 python3 benchmarks/calibrate_tolerance.py --json $OUT/calibrate.json > $OUT/calibrate.log 2>&1; tail -5 $OUT/calibrate.log
timeout 200 python3 -m pytest -q -m gpu tests/test_evaluator_gpu.py tests/test_adversarial.py -p no:cacheprovider > $OUT/pytest_gpu.log 2>&1; tail -15 $OUT/pytest_gpu.log
