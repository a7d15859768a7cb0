#!/usr/bin/env bash
# GPU session 3, in steps (each one device call, the machine kept warm between them):
#   checks  - quick eval, default-suite eval with every baseline, A/A x5, GPU evaluator tests,
#             then starts the 20-minute offline run in the background
#   wait    - waits while the run goes on, prints its status
#   finish  - status/best of the run, export of the best + selftest + bench, results to $OUT
set -u
. benchmarks/gpu/setup.sh || exit 1
RUNS=/root/runs; RUN=h200-offline-gqa
summ() { python3 benchmarks/gpu/summarise.py "$@"; }
case "$1" in
checks)
  timeout 150 python3 -m evolve eval seeds/gqa.py --target gqa --suite quick --baselines cudnn --json > $OUT/eval_quick.json 2> $OUT/eval_quick.err
  echo "== quick eval rc=$?"; summ $OUT/eval_quick.json || exit 1
  /usr/bin/time -f "default-suite eval wall %e s" timeout 420 python3 -m evolve eval seeds/gqa.py --target gqa --suite default --baselines cudnn,flash,flex --json > $OUT/eval_default_all.json 2> $OUT/eval_default_all.err
  echo "== default eval (all baselines) rc=$?"; tail -1 $OUT/eval_default_all.err; summ $OUT/eval_default_all.json
  /usr/bin/time -f "A/A x5 wall %e s" timeout 400 python3 -m evolve eval seeds/gqa.py --target gqa --suite default --baselines cudnn --repeat 5 --json > $OUT/eval_aa5.json 2> $OUT/eval_aa5.err
  echo "== A/A rc=$?"; tail -1 $OUT/eval_aa5.err; summ $OUT/eval_aa5.json --brief
  mkdir -p $RUNS; setsid nohup python3 -m evolve start --target gqa --suite default --max-minutes 20 --name $RUN --runs-dir $RUNS > /root/run.log 2>&1 < /dev/null &
  echo "started run pid $!"
  ;;
wait)
  sleep "${2:-540}"; tail -5 /root/run.log; python3 -m evolve status $RUN --runs-dir $RUNS | tail -25
  ;;
tests)
  timeout "${2:-400}" python3 -m pytest -v --tb=short -m gpu -p no:cacheprovider --timeout 150 ${3:-tests/test_evaluator_gpu.py tests/test_adversarial.py} > $OUT/pytest_gpu.log 2>&1
  grep -E "PASSED|FAILED|ERROR|passed|failed|^E " $OUT/pytest_gpu.log | tail -40
  ;;
finish)
  while pgrep -f "evolve start" >/dev/null; do sleep 10; done
  cp /root/run.log $OUT/run.log
  python3 -m evolve status $RUN --runs-dir $RUNS > $OUT/run_status.txt 2>&1; cat $OUT/run_status.txt | tail -30
  python3 -m evolve best $RUN --runs-dir $RUNS > $OUT/run_best.txt 2>&1; tail -40 $OUT/run_best.txt
  cp $RUNS/$RUN/lineage.db $OUT/lineage.db
  tar czf $OUT/kernels.tgz -C $RUNS/$RUN kernels run.toml
  python3 -m evolve export $RUN --runs-dir $RUNS --out /root/best_gqa.py > $OUT/export.txt 2>&1; echo "export rc=$?"; tail -5 $OUT/export.txt
  (python3 /root/best_gqa.py --selftest; python3 /root/best_gqa.py --bench --suite default) >> $OUT/export.txt 2>&1; tail -40 $OUT/export.txt
  ;;
esac
