#!/usr/bin/env bash
# GPU session 5: where evaluation time goes (compile serial vs threads), then the GPU half
# of the adversarial suite and the evaluator GPU tests.
set -u
. benchmarks/gpu/setup.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $OUT/gpu.txt
python3 -c "import torch,triton;print(torch.__version__,triton.__version__,torch.backends.cudnn.version())" >> $OUT/gpu.txt
cat $OUT/gpu.txt
for mode in serial threads:8 threads:16 serial; do
  TRITON_CACHE_DIR=$(mktemp -d) python3 benchmarks/gpu/profile_compile.py seeds/gqa.py $mode | tee -a $OUT/profile.jsonl | cut -c1-400
done
timeout 420 python3 -m pytest -v --tb=short -rfE -m gpu -p no:cacheprovider --timeout 150 \
   tests/test_evaluator_gpu.py tests/test_adversarial.py > $OUT/pytest_gpu.log 2>&1
grep -E "PASSED|FAILED|ERROR|passed|failed|^E " $OUT/pytest_gpu.log | tail -45
