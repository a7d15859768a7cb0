#!/usr/bin/env bash
# GPU session 6, on a 2-GPU machine, in two calls.
#   phase1: GPU1 runs the GPU half of the adversarial suite and the evaluator GPU tests while
#           GPU0 times evolve eval (quick, default x2) and compares seed variants against
#           cuDNN/flash/Flex; then starts throughput run A in the background:
#           offline from seeds/gqa_naive.py, --gpus 0,1, 5 minutes.
#   phase2: waits for run A, then run B (the same configuration, --gpus 0) beside run C
#           (offline from seeds/gqa.py on GPU1); collects stats and the runs.
set -u
. benchmarks/gpu/setup.sh || exit 1
RUNS=/root/runs; mkdir -p $RUNS
MIN=${MIN:-5}
COMMON="--target gqa --operator offline --runs-dir $RUNS --proposers 2 --rng-seed 7"
if [ "$1" = phase1 ]; then
  nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm,power.limit --format=csv | tee $OUT/gpu.txt
  python3 -c "import torch,triton;print(torch.__version__,triton.__version__,torch.backends.cudnn.version())" | tee -a $OUT/gpu.txt
  ( CUDA_VISIBLE_DEVICES=1 timeout 500 python3 -m pytest -v --tb=short -rfE -m gpu -p no:cacheprovider \
      --timeout 200 tests/test_adversarial.py tests/test_evaluator_gpu.py > $OUT/pytest_gpu.log 2>&1 ) &
  PT=$!
  export CUDA_VISIBLE_DEVICES=0
  for s in quick default default2; do
    /usr/bin/time -f "eval $s wall %e s" python3 -m evolve eval seeds/gqa.py --target gqa --suite ${s%2} \
      --json > $OUT/eval_$s.json 2>> $OUT/eval_times.txt
  done
  grep -h "wall" $OUT/eval_times.txt
  python3 benchmarks/gpu/summarise.py $OUT/eval_default.json | tail -3
  # the two gqa_persist files were folded into seeds/gqa.py's PERSIST_* knobs since
  # (see benchmarks/experiments/README.md)
  timeout 330 python3 benchmarks/compare.py seeds/gqa.py benchmarks/experiments/gqa_split.py \
     benchmarks/experiments/gqa_persist.py benchmarks/experiments/gqa_persist_flat.py --target gqa \
     --out $OUT/compare > $OUT/compare.log 2>&1
  tail -32 $OUT/compare.log
  wait $PT
  grep -E "PASSED|FAILED|ERROR|passed|failed|^E " $OUT/pytest_gpu.log | tail -40
  unset CUDA_VISIBLE_DEVICES
  setsid nohup python3 -m evolve start $COMMON --seed seeds/gqa_naive.py --gpus 0,1 \
     --name tp-2gpu --max-minutes $MIN > /root/tp-2gpu.log 2>&1 < /dev/null &
  sleep 20; tail -5 /root/tp-2gpu.log
fi
if [ "$1" = phase2 ]; then
  while pgrep -f "name tp-2gpu" > /dev/null; do sleep 5; done
  tail -3 /root/tp-2gpu.log
  python3 -m evolve start $COMMON --seed seeds/gqa_naive.py --gpus 0 --name tp-1gpu \
     --max-minutes $MIN > /root/tp-1gpu.log 2>&1 &
  B=$!
  python3 -m evolve start $COMMON --seed seeds/gqa.py --gpus 1 --name seed-gqa \
     --max-minutes $MIN > /root/seed-gqa.log 2>&1 &
  C=$!
  wait $B $C
  for r in tp-2gpu tp-1gpu seed-gqa; do
    python3 benchmarks/gpu/run_stats.py $RUNS/$r --json $RUNS/$r/stats.json
    python3 -m evolve status $r --runs-dir $RUNS 2>&1 | tail -25
  done
  tar czf $OUT/runs.tgz -C $RUNS . /root/tp-2gpu.log /root/tp-1gpu.log /root/seed-gqa.log 2>/dev/null
  ls -la $OUT
fi
