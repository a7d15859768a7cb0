#!/usr/bin/env bash
# GPU session 10, one H100, back-to-back calls.
#   phase1: sweeps the seed's tile knobs separately for short sequences (the _S knobs,
#           S < SHORT_S) and long ones, on every default-suite shape (seed_tune.py
#           --all-shapes), merges the best configs into $R/gqa_new.py, checks it with
#           `evolve eval` (default suite, cuDNN timed).
#   phase2: compare.py (seed before vs merged vs cuDNN/flash/Flex, one process), then starts
#           an offline run from seeds/gqa_naive.py in the background (ends END_MIN minutes
#           after phase1 began).
#   phase3: waits for the run; call again until it prints "collected".
# As run on 2026-11-26 (results: benchmarks/results/2026-11-26-h100-session10/): phase1,
# phase2, `END_MIN=24 ... phase3`, `END_MIN=22 ... phase3`, then `END_MIN=0 ... phase3`
# followed by `compare.py $R/gqa_before.py --rounds 2` (contaminated/: the run had not
# stopped, SIGINT was ignored by the background loop, fixed since in evolve/driver.py),
# and a last call that SIGKILLed the run, collected it and ran that comparison again
# (compare_il2/).
# Background steps read private copies under /root: the device tool copies the working tree
# again at the start of every call.
set -u
. benchmarks/gpu/setup.sh || exit 1
R=/root/s10; mkdir -p $R/runs
END_MIN=${END_MIN:-27}
pack() { local name=$1; shift; tar czf $OUT/$name.tgz -C $R --ignore-failed-read "$@" 2>/dev/null; }
left_min() { python3 -c "import time;print(round(($(cat $R/t0)+$END_MIN*60-time.time())/60,2))"; }
if [ "$1" = phase1 ]; then
  date +%s > $R/t0
  nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm,power.limit --format=csv | tee $R/gpu.txt
  python3 -c "import torch,triton;print(torch.__version__,triton.__version__,torch.backends.cudnn.version())" | tee -a $R/gpu.txt
  cp seeds/gqa.py $R/gqa_before.py; cp seeds/gqa_naive.py $R/gqa_naive.py
  # D=128 short sequences on every Hq (the bulk of the suite), the rest on Hq=32; the JSON is
  # rewritten after every config, so a timeout keeps what was measured
  timeout 300 python3 benchmarks/gpu/seed_tune.py sweep --all-shapes --seed $R/gqa_before.py \
      --classes D128_NC_S,D128_C_S --json $R/sweep_a.json > $R/sweep_a.log 2>&1
  timeout 160 python3 benchmarks/gpu/seed_tune.py sweep --seed $R/gqa_before.py \
      --classes D128_NC,D128_C,D64_NC_S,D64_C_S,D64_NC,D64_C --json $R/sweep_b.json > $R/sweep_b.log 2>&1
  grep -h -E "^  D" $R/sweep_a.log $R/sweep_b.log | tail -n 100
  python3 benchmarks/gpu/seed_tune.py merge $R/sweep_a.json $R/sweep_b.json --seed $R/gqa_before.py \
      --min-gain 0.005 --write $R/gqa_new.py | tee $R/merge.txt
  /usr/bin/time -f "new default (cuDNN timed) wall %e s" python3 -m evolve eval $R/gqa_new.py \
      --target gqa --suite default --baselines cudnn --json > $R/eval_new.json 2>> $R/eval_times.txt
  tail -n 1 $R/eval_times.txt
  python3 -c "import json;d=json.load(open('$R/eval_new.json'));print('evaluator:',d['status'],d['score'])"
  pack phase1 gpu.txt sweep_a.json sweep_a.log sweep_b.json sweep_b.log merge.txt gqa_new.py eval_new.json eval_times.txt
  echo "left: $(left_min) min"
fi
if [ "$1" = phase2 ]; then
  timeout 300 python3 benchmarks/compare.py $R/gqa_before.py $R/gqa_new.py --target gqa \
      --out $R/compare > $R/compare.log 2>&1
  tail -n 30 $R/compare.log
  pack phase2 compare.log compare
  setsid nohup python3 -m evolve start --target gqa --operator offline --runs-dir $R/runs \
      --rng-seed 10 --seed $R/gqa_naive.py --name naive \
      --max-minutes $(python3 -c "print($(left_min)-0.5)") > $R/naive.log 2>&1 < /dev/null &
  sleep 30; tail -n 3 $R/naive.log
  echo "left: $(left_min) min"
fi
if [ "$1" = phase3 ]; then  # call again until it prints "collected"
  T=$(date +%s)
  while pgrep -f "m [e]volve start" > /dev/null && [ $(( $(date +%s) - T )) -lt 540 ]; do
    if python3 -c "import sys;sys.exit($(left_min) > 0)"; then pkill -INT -f "m [e]volve start"; sleep 25; break; fi
    sleep 5
  done
  python3 benchmarks/gpu/run_stats.py $R/runs/naive --json $R/stats_naive.json | tail -14
  cp $R/runs/naive/lineage.db $R/lineage_naive.db 2>/dev/null
  if pgrep -f "m [e]volve start" > /dev/null; then
    pack phase3-partial naive.log stats_naive.json lineage_naive.db
    echo "run still going; left: $(left_min) min"
  else
    python3 -m evolve status naive --runs-dir $R/runs 2>&1 | tail -30
    (cd $R/runs/naive && tar czf $R/kernels_naive.tgz kernels run.toml)
    pack phase3 naive.log stats_naive.json lineage_naive.db kernels_naive.tgz
    echo collected
  fi
fi
