#!/usr/bin/env bash
# GPU session 2: diagnose the evaluator end to end on the GPU, then the GPU test suite verbose.
set -u
. benchmarks/gpu/setup.sh || exit 1
summ() { python3 - "$1" <<'PY'
import json,sys
try:
    d=json.load(open(sys.argv[1]))
except Exception as e:
    print("no json:", e); sys.exit()
print(d["status"], d.get("failure"), "score", d.get("score"), "isolation", d["env"].get("isolation"), "wall", d.get("wall_s"))
for s in d.get("shapes", []):
    print("  %-60s ms=%s tflops=%s base=%s sp=%s err=%s" % (s["name"], s["ms"], s["tflops"], s["baselines"], s["speedup"], s["error_ratio"]))
if d["status"] != "ok": print(d.get("log_tail","")[-3000:])
PY
}
for mode in auto none; do
  EVOLVE_SANDBOX=$mode timeout 150 python3 -m evolve eval seeds/gqa.py --target gqa --suite quick --baselines cudnn --json > $OUT/eval_quick_$mode.json 2> $OUT/eval_quick_$mode.err
  echo "== quick eval sandbox=$mode rc=$?"; summ $OUT/eval_quick_$mode.json; tail -5 $OUT/eval_quick_$mode.err
done
timeout 400 python3 -m pytest -v --tb=short -m gpu -p no:cacheprovider --timeout 150 \
  tests/test_evaluator_gpu.py tests/test_adversarial.py tests/test_seeds.py tests/test_export.py tests/test_bench.py \
  > $OUT/pytest_gpu.log 2>&1
grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed" $OUT/pytest_gpu.log | tail -40
