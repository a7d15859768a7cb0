# One device call of the Gluon work (issue 20), run from the repo root on the GPU machine:
#   bash benchmarks/gpu/gluon_session.sh STEP [check] [compare] [evalquick] [evaldefault] [ncu]
# Full logs go to $OUT/STEP/; stdout gets failures, summaries and tables only.
set -u
STEP=$1; shift
. benchmarks/gpu/setup.sh || exit 1
D=$OUT/$STEP; mkdir -p $D
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $D/gpu.txt
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())" | tee -a $D/gpu.txt
for what in "$@"; do
  t0=$(date +%s)
  case $what in
    check) timeout ${CHECK_TIMEOUT:-240} python3 benchmarks/gpu/gluon_bench.py check seeds/gqa_gluon.py ${KERNELS:-} --config "${CHECK_CONFIG:-{\}}" --out $D > $D/check.log 2>&1
           echo "check rc=$?"; grep -v '^ok' $D/check.log | tail -40 ;;
    compare) timeout ${COMPARE_TIMEOUT:-300} python3 benchmarks/compare.py seeds/gqa_gluon.py ${KERNELS:-} seeds/gqa.py --peers ${PEERS:-cudnn,flash} \
               --rounds ${ROUNDS:-3} --out $D > $D/compare.log 2>&1
           echo "compare rc=$?"; grep -v '^  ' $D/compare.log | tail -45 ;;
    evalquick) python3 -m evolve eval seeds/gqa_gluon.py --suite quick > $D/eval_quick.log 2>&1
           echo "eval quick rc=$?"; tail -15 $D/eval_quick.log ;;
    evaldefault) timeout ${EVAL_TIMEOUT:-300} python3 -m evolve eval seeds/gqa_gluon.py --suite default --json > $D/eval_default.json 2> $D/eval_default.err
           echo "eval default rc=$?"; python3 -c "
import json; r = json.load(open('$D/eval_default.json'))
print(r['status'], r['failure'], 'score', r['score'], r['primary_baseline'], r['validation'])" ;;
    sweep) timeout ${SWEEP_TIMEOUT:-300} python3 benchmarks/gpu/gluon_bench.py sweep seeds/gqa_gluon.py --configs "$CONFIGS" --suite ${SUITE:-default} --out $D > $D/sweep.log 2>&1
           echo "sweep rc=$?"; tail -${SWEEP_TAIL:-12} $D/sweep.log ;;
  esac
  echo "[$what took $(( $(date +%s) - t0 )) s]"
done
# profile (ncu) of one shape: PROFILE_ARGS="16384 128" (S D [causal])
if [ "${NCU:-0}" = 1 ]; then
  t0=$(date +%s)
  timeout ${NCU_TIMEOUT:-90} ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
      --section Occupancy --section LaunchStats -k regex:'attn_fwd|fmha|flash|cudnn|sm90' --launch-count 2 \
      python3 benchmarks/gpu/gluon_profile.py ${PROFILE_ARGS:-16384 128} > $D/ncu.txt 2>&1
  echo "ncu rc=$?"; grep -E '^  [a-zA-Z_].*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Executed Ipc A|Warp Cycles Per Issued' $D/ncu.txt | head -40
  echo "[ncu took $(( $(date +%s) - t0 )) s]"
fi
