#!/usr/bin/env bash
# The one GPU runner: every number cited in benchmarks/results/README.md comes from one of
# these subcommands, run from the repository root on a GPU machine (e.g. the device tool:
# `bash benchmarks/gpu/run.sh compare`). Results go to $OUT (default /tmp/out).
#
#   env                          card, driver, clocks, torch/triton/cuDNN versions (gpu.txt)
#   compare [KERNEL...]          kernels beside cuDNN/flash/Flex in one process, interleaved,
#                                2 rounds (default kernel seeds/gqa.py): the seed-vs-peers table
#   eval KERNEL [SUITE] [REPEAT] `evolve eval` with cuDNN only (REPEAT > 1: A/A spread)
#   eval-all KERNEL              `evolve eval` with every peer timed in the worker
#   eval-speed KERNEL...         evaluation wall time as a run sees it (eval_speed.json)
#   eval-log KERNEL [SUITE]      one evaluation (cuDNN timed in it) with the worker's log kept:
#                                stage times and where the correctness seconds go
#   sweep CLASSES [KERNEL]       per-class knob sweep of a seed, then merge the winners into
#                                $OUT/merged.py (sweep.json, merge.txt); e.g. D128_NC,D64_C
#   calibrate [KERNEL]           the correctness rule's margin: kernel error / torch error
#   seed-check                   every seed on every validation shape, bf16 and fp16
#   check KERNEL... [CONFIG]     one kernel (e.g. the Gluon seed) on every GPU validation shape,
#                                bf16+fp16, all input kinds (check.json); CONFIG: JSON overrides
#   config-sweep KERNEL CONFIGS  the kernel with each CONFIG override (a JSON list) timed
#                                against cuDNN (sweep.json); for tuning, not for citing
#   ncu [S D [causal]]           Nsight Compute over the Gluon seed and cuDNN on one shape (ncu.txt;
#                                KERNEL=path: another Gluon file instead of the seed)
#   ncu-overlap [S D [causal]]   `ncu` for the seed, then for the seed with the overlap in its
#                                warp-specialised loop too (overlap_wait.py): ncu_overlap.txt
#   gluon-ab [KERNEL...]         issue #20: the Gluon seed (intra-warpgroup overlap in its plain
#                                kernel only) beside the seed without it (hoisted_wait.py),
#                                with it in both kernels (overlap_wait.py), the same with P
#                                converted before the PV wait (--convert-first), seeds/gqa.py
#                                and KERNELs, interleaved with cuDNN/flash/Flex (compare/),
#                                then the seed's evaluator score (eval_default.json)
#   gluon-d128                   issue #20: the D128 schedule, overlap or not, each with and
#                                without ping-pong and warp specialisation, and with more
#                                consumer registers; cuDNN in the same process
#   recipes [SEED] [SUITE] [RECIPES] [AFTER]
#                                each offline-operator recipe that applies to SEED (default
#                                seeds/gqa.py) checked and timed against the seed and cuDNN
#                                in one process: table + recipes_<seed>.json (kept/dropped);
#                                AFTER: recipes stacked on the seed first, the base of the
#                                comparison (e.g. `recipes seeds/gqa_naive.py default
#                                host_tma_kv tma_load_kv`)
#   naive-stack                  issue #19: what the recipes reach from seeds/gqa_naive.py when
#                                stacked (the six kept or proposed ones), then + host_tma_kv,
#                                then + D=128 classes at 128x64 with 4 warps, and that with
#                                host_tma_o + host_tma_q too, beside the naive seed and
#                                seeds/gqa.py; cuDNN, STACK_ROUNDS rounds (1; compare/)
#   offline SEED MINUTES NAME [RNG_SEED] [TARGET]
#                                an offline run in the foreground (target gqa unless given),
#                                then its stats and what paid per kind and per shape class
#                                (stats_NAME.json, report_NAME.txt, lineage_NAME.db,
#                                kernels_NAME.tgz, run_NAME.tgz: the run directory);
#                                OVERLAP=0: with --no-overlap; GPU=i: on GPU i only
#                                (CUDA_VISIBLE_DEVICES); CPUS=a-b: on those CPUs only (taskset),
#                                e.g. two one-GPU runs side by side on a two-GPU machine
#   bg-offline SEED MINUTES NAME [RNG_SEED] [TARGET] [WAIT_S]
#                                `offline` in its own process session (setsid), so that a
#                                run longer than one device call goes on between calls on a
#                                warm machine; waits WAIT_S seconds (default 0) with `bg-wait`
#   bg NAME COMMAND [ARGS]       any command of this script in its own process session, its
#                                files under /root/bg/NAME (e.g. `bg ov overlap SEED 4`: a
#                                pair longer than one call); wait for it with `bg-wait NAME`,
#                                which returns its .txt files and the rest as bg_NAME.tgz
#   bg-wait NAME [WAIT_S]        wait up to WAIT_S (default 560) for the bg-offline run (or bg
#                                command) NAME, printing its progress; once it has ended, its
#                                files (a run still going: a snapshot of its log and lineage)
#   gluon-cvt                    issue #20: the Gluon seed beside the overlap in both kernels
#                                with and without P converted before the PV wait, cuDNN only
#                                (compare/); short enough to share a call with bg-offline
#   gluon-turn                   issue #20: the Gluon seed beside the same with the ping-pong
#                                handshake behind a runtime `if` (gluon_variants/turn_if.py:
#                                one warpgroup BAR.SYNC less per iteration), cuDNN, 3 rounds
#   resume NAME MINUTES          continue runs/NAME (carried from here: unpack run_NAME.tgz
#                                under runs/) for MINUTES more; the same files as `offline`
#   overlap SEED MINUTES [RNG_SEED] [TARGET]
#                                issue #19: `offline` with overlap (NAME ov-on), then the
#                                same without (ov-off), then both side by side: candidates
#                                per GPU-minute, timing share per worker (overlap.txt);
#                                PARALLEL=1 (two GPUs): both at once, ov-on on GPU 0 and
#                                the first half of the CPUs, ov-off on GPU 1 and the rest
#   decode [KERNEL...]           decode target: kernels (default seeds/decode_naive.py and
#                                seeds/decode.py) on every validation shape, timed against
#                                the baselines on the default suite, bandwidth on S_max=128k
#                                as a fraction of measured copy bandwidth (decode.json)
#   tests [FILE...]              the GPU tests (pytest -m gpu; all of tests/ by default)
#   ncu-probe                    which part of the sandbox stops Nsight Compute (ncu.py)
#   agent-transcript [SHAPE]     a scripted agent session on seeds/gqa.py calling compile_info
#                                and profile (real HTTP + evaluator): transcript.md/json, show.txt
#
# Long steps are cut by `timeout` so that a partial JSON still comes back (the tools rewrite
# their JSON as they go). A device machine is held at most 30 minutes: split a session into
# calls, e.g. `env`, `compare`, then `offline seeds/gqa_naive.py 20 naive 10`.
set -u
cmd=${1:-}; shift || true
case "$cmd" in
  env|compare|eval|eval-all|eval-log|eval-speed|sweep|calibrate|seed-check|check|config-sweep|ncu|ncu-overlap|gluon-ab|gluon-cvt|gluon-turn|bg|bg-offline|bg-wait|gluon-d128|naive-stack|recipes|offline|resume|run-files|overlap|decode|tests|agent-transcript|ncu-probe)
    . "$(dirname "$0")/setup.sh" || exit 1; OUT=${OUT:-/tmp/out} ;;
  *) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 2 ;;
esac
case "$cmd" in
  env)
    nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
    python3 -c "import torch,triton;print(torch.__version__,triton.__version__,torch.backends.cudnn.version())" \
        | tee -a "$OUT/gpu.txt" ;;
  compare)
    [ $# -gt 0 ] || set -- seeds/gqa.py
    timeout 500 python3 benchmarks/compare.py "$@" --target gqa --rounds 2 --out "$OUT/compare" \
        2>&1 | tee "$OUT/compare.log" | tail -n 40 ;;
  eval)
    file=$1; suite=${2:-default}; rep=${3:-1}
    /usr/bin/time -f "wall %e s" python3 -m evolve eval "$file" --target gqa --suite "$suite" \
        --baselines cudnn --repeat "$rep" --json > "$OUT/eval_$suite.json" 2>> "$OUT/eval_times.txt"
    python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['status'],d['score'],d['repeats'])" \
        "$OUT/eval_$suite.json"; tail -n 1 "$OUT/eval_times.txt" ;;
  eval-all)
    python3 -m evolve eval "$1" --target gqa --suite default --json > "$OUT/eval_default_all.json"
    python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['status'],d['score'])" \
        "$OUT/eval_default_all.json" ;;
  eval-log)
    timeout 300 python3 benchmarks/gpu/eval_log.py "$1" "${2:-default}" --out "$OUT" ;;
  eval-speed)
    timeout 500 python3 benchmarks/gpu/eval_speed.py "$@" --json "$OUT/eval_speed.json" 2>&1 | tee "$OUT/eval_speed.log" ;;
  sweep)
    classes=$1; seed=${2:-seeds/gqa.py}
    timeout 400 python3 benchmarks/gpu/seed_tune.py sweep --classes "$classes" --seed "$seed" \
        --json "$OUT/sweep.json" > "$OUT/sweep.log" 2>&1; tail -n 40 "$OUT/sweep.log"
    python3 benchmarks/gpu/seed_tune.py merge "$OUT/sweep.json" --seed "$seed" --min-gain 0.005 \
        --write "$OUT/merged.py" | tee "$OUT/merge.txt" ;;
  calibrate)
    python3 benchmarks/calibrate_tolerance.py --kernel "${1:-seeds/gqa.py}" --json "$OUT/calibrate.json" \
        2>&1 | tee "$OUT/calibrate.log" | tail -n 30 ;;
  seed-check)
    timeout 500 python3 benchmarks/seed_sweep.py "$OUT/seed_sweep.json" --no-tune 2>&1 | tee "$OUT/seed_sweep.log" | tail -n 20 ;;
  check)
    config='{}'; case "${!#}" in \{*) config=${!#}; set -- "${@:1:$#-1}" ;; esac
    timeout 300 python3 benchmarks/gpu/gluon_bench.py check "$@" --config "$config" --out "$OUT" \
        > "$OUT/check.log" 2>&1; echo "check rc=$?"; grep -v '^ok' "$OUT/check.log" | tail -n 40 ;;
  config-sweep)
    timeout 400 python3 benchmarks/gpu/gluon_bench.py sweep "$1" --configs "$2" --out "$OUT" \
        > "$OUT/sweep.log" 2>&1; echo "sweep rc=$?"; tail -n 12 "$OUT/sweep.log" ;;
  ncu)
    [ $# -gt 0 ] || set -- 16384 128
    timeout 120 ncu --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
        --section Occupancy --section LaunchStats -k regex:'attn_fwd|fmha|flash|cudnn|sm90' --launch-count 2 \
        python3 benchmarks/gpu/gluon_profile.py "$@" > "$OUT/ncu.txt" 2>&1; echo "ncu rc=$?"
    grep -E 'Duration|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy' "$OUT/ncu.txt" | head -n 20 ;;
  ncu-overlap)
    bash "$0" ncu "$@"; mv "$OUT/ncu.txt" "$OUT/ncu_seed.txt"
    python3 benchmarks/gpu/gluon_variants/overlap_wait.py /tmp/gqa_gluon_overlap.py
    KERNEL=/tmp/gqa_gluon_overlap.py bash "$0" ncu "$@"; mv "$OUT/ncu.txt" "$OUT/ncu_overlap.txt" ;;
  gluon-ab)
    v=benchmarks/gpu/gluon_variants
    python3 $v/hoisted_wait.py /tmp/gqa_gluon_hoisted.py
    python3 $v/overlap_wait.py /tmp/gqa_gluon_overlap.py
    python3 $v/overlap_wait.py --convert-first /tmp/gqa_gluon_overlap_cvt.py
    timeout 480 python3 benchmarks/compare.py seeds/gqa_gluon.py /tmp/gqa_gluon_hoisted.py \
        /tmp/gqa_gluon_overlap.py /tmp/gqa_gluon_overlap_cvt.py seeds/gqa.py "$@" --target gqa \
        --rounds 2 --out "$OUT/compare" > "$OUT/compare.log" 2>&1
    echo "compare rc=$?"; grep -c ERROR "$OUT/compare.log"; tail -n 30 "$OUT/compare.log"
    timeout 180 python3 -m evolve eval seeds/gqa_gluon.py --target gqa --suite default \
        --baselines cudnn --json > "$OUT/eval_default.json"
    python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d['status'],d['score'])" \
        "$OUT/eval_default.json" ;;
  gluon-cvt)
    v=benchmarks/gpu/gluon_variants
    python3 $v/overlap_wait.py /tmp/gqa_gluon_overlap.py
    python3 $v/overlap_wait.py --convert-first /tmp/gqa_gluon_overlap_cvt.py
    timeout "${CVT_TIMEOUT:-300}" python3 benchmarks/compare.py seeds/gqa_gluon.py /tmp/gqa_gluon_overlap.py \
        /tmp/gqa_gluon_overlap_cvt.py --peers cudnn --target gqa --rounds 2 --out "$OUT/compare" \
        > "$OUT/compare.log" 2>&1
    echo "compare rc=$?"; grep -c ERROR "$OUT/compare.log"; tail -n 30 "$OUT/compare.log" | cut -c1-200 ;;
  gluon-turn)
    python3 benchmarks/gpu/gluon_variants/turn_if.py /tmp/gqa_gluon_turn_if.py
    timeout "${TURN_TIMEOUT:-300}" python3 benchmarks/compare.py seeds/gqa_gluon.py /tmp/gqa_gluon_turn_if.py \
        --peers cudnn --target gqa --rounds 3 --out "$OUT/compare" > "$OUT/compare.log" 2>&1
    echo "compare rc=$?"; grep -c ERROR "$OUT/compare.log"; tail -n 30 "$OUT/compare.log" | cut -c1-200 ;;
  bg-offline)
    seed=$1; minutes=$2; name=$3; rng=${4:-7}; target=${5:-gqa}; wait_s=${6:-0}
    mkdir -p /root/bg; rm -f "/root/bg/$name.rc"
    setsid nohup bash -c "OUT=/root/bg bash '$0' offline '$seed' '$minutes' '$name' '$rng' '$target' \
        > /root/bg/$name.console 2>&1; echo \$? > /root/bg/$name.rc" < /dev/null > /dev/null 2>&1 &
    echo "started $name in the background (setsid); its files go to /root/bg"
    [ "$wait_s" -gt 0 ] && bash "$0" bg-wait "$name" "$wait_s" ;;
  bg)
    name=$1; shift; mkdir -p "/root/bg/$name"; rm -f "/root/bg/$name.rc"
    setsid nohup bash -c "OUT='/root/bg/$name' bash '$0' $* > /root/bg/$name.console 2>&1; \
        echo \$? > /root/bg/$name.rc" < /dev/null > /dev/null 2>&1 &
    echo "started '$*' as $name in the background (setsid); its files go to /root/bg/$name" ;;
  bg-wait)
    name=$1; wait_s=${2:-560}; t0=$SECONDS
    while [ ! -f "/root/bg/$name.rc" ] && [ $((SECONDS - t0)) -lt "$wait_s" ]; do sleep 10; done
    log=/root/bg/$name.log; [ -d "/root/bg/$name" ] && log=$(ls -t /root/bg/$name/*.log 2>/dev/null | head -n 1)
    tail -n 5 "$log" 2>/dev/null | cut -c1-200
    if [ -f "/root/bg/$name.rc" ]; then
      echo "run $name ended, rc=$(cat /root/bg/$name.rc)"; cat "/root/bg/$name.console"
      cp /root/bg/*"$name"* "$OUT/" 2>/dev/null
      if [ -d "/root/bg/$name" ]; then  # a device call returns at most 8 files: its text, one tarball
        cp /root/bg/$name/*.txt "$OUT/" 2>/dev/null
        tar czf "$OUT/bg_$name.tgz" --exclude='run_*.tgz' -C /root/bg "$name"
      fi; true
    else
      echo "run $name still running after ${wait_s}s: a snapshot of its lineage and log in \$OUT"
      cp "/root/bg/$name.log" "$OUT/$name.partial.log" 2>/dev/null
      python3 -c "import sqlite3,sys;sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" \
          "/root/runs/$name/lineage.db" "$OUT/lineage_$name.partial.db" 2>/dev/null; true
    fi ;;
  gluon-d128)
    v=benchmarks/gpu/gluon_variants; d=/tmp/d128; mkdir -p $d
    python3 $v/overlap_wait.py $d/overlap.py; python3 $v/hoisted_wait.py $d/hoisted.py
    for w in overlap hoisted; do
      python3 $v/config_variant.py $d/$w.py $d/${w}_pingpong.py D128_NC.PINGPONG=1 D128_C.PINGPONG=1
      python3 $v/config_variant.py $d/$w.py $d/${w}_plain.py D128_NC.WS=0 D128_C.WS=0
    done
    python3 $v/config_variant.py $d/overlap.py $d/overlap_regs240.py D128_NC.CONSUMER_REGS=240 D128_NC.LOADER_REGS=24 \
        D128_C.CONSUMER_REGS=240 D128_C.LOADER_REGS=24
    timeout 420 python3 benchmarks/compare.py $d/overlap.py $d/hoisted.py $d/overlap_pingpong.py \
        $d/hoisted_pingpong.py $d/overlap_regs240.py $d/overlap_plain.py $d/hoisted_plain.py --peers cudnn \
        --target gqa --rounds 2 --out "$OUT/compare" > "$OUT/compare.log" 2>&1
    echo "compare rc=$?"; grep -c ERROR "$OUT/compare.log"; tail -n 30 "$OUT/compare.log" | cut -c1-200 ;;
  naive-stack)
    d=/tmp/stack; mkdir -p $d
    stack() {  # SEED OUT RECIPE,RECIPE...: the seed with the recipes applied in order
      python3 -c "import sys; sys.path.insert(0, 'benchmarks/gpu'); import recipe_bench as r
open(sys.argv[2], 'w').write(r.stacked(open(sys.argv[1]).read(), sys.argv[3].split(',')))" "$@"; }
    stack seeds/gqa_naive.py $d/naive_stack.py \
        fold_scale_exp2,split_causal_loop,tma_load_kv,tma_store_o,swap_grid_order,unmasked_full_tiles
    stack $d/naive_stack.py $d/naive_stack_host.py host_tma_kv
    stack $d/naive_stack_host.py $d/naive_stack_hostqo.py host_tma_o,host_tma_q
    for k in host hostqo; do  # the D=128 classes at 128x64, 4 warps (8 lost: session 11)
      python3 benchmarks/gpu/gluon_variants/config_variant.py $d/naive_stack_$k.py \
          $d/naive_stack_${k}_t128.py NC.BLOCK_M=128 NC.num_warps=4 C.BLOCK_M=128 C.num_warps=4
    done
    timeout "${STACK_TIMEOUT:-300}" python3 benchmarks/compare.py seeds/gqa_naive.py $d/naive_stack.py \
        $d/naive_stack_host.py $d/naive_stack_host_t128.py $d/naive_stack_hostqo_t128.py seeds/gqa.py \
        --peers cudnn --target gqa --rounds "${STACK_ROUNDS:-1}" --out "$OUT/compare" > "$OUT/compare.log" 2>&1
    echo "compare rc=$?"; grep -c ERROR "$OUT/compare.log"; tail -n 30 "$OUT/compare.log" | cut -c1-200 ;;
  recipes)
    seed=${1:-seeds/gqa.py}; name=$(basename "$seed" .py); after=${4:-}
    [ -n "$after" ] && name="${name}_after_${after//,/+}"
    timeout "${RECIPES_TIMEOUT:-560}" python3 benchmarks/gpu/recipe_bench.py --seed "$seed" --suite "${2:-default}" \
        --recipes "${3:-}" --after "$after" --json "$OUT/recipes_$name.json" > "$OUT/recipes_$name.log" 2>&1
    echo "recipes rc=$?"; tail -n 20 "$OUT/recipes_$name.log" ;;
  offline)
    seed=$1; minutes=$2; name=$3; rng=${4:-7}; target=${5:-gqa}; runs=${RUNS:-/root/runs}
    ov=--overlap; [ "${OVERLAP:-1}" = 0 ] && ov=--no-overlap
    pin=(); [ -n "${CPUS:-}" ] && pin=(taskset -c "$CPUS")
    ${GPU:+env CUDA_VISIBLE_DEVICES=$GPU} "${pin[@]}" python3 -m evolve start --target "$target" \
        --operator offline --runs-dir $runs --rng-seed "$rng" --seed "$seed" --name "$name" \
        --max-minutes "$minutes" $ov > "$OUT/$name.log" 2>&1 < /dev/null
    bash "$0" run-files "$runs" "$name" ;;
  resume)
    name=$1; minutes=$2; runs=${RUNS:-/root/runs}; mkdir -p $runs; cp -a "runs/$name" "$runs/"
    python3 -m evolve resume "$name" --runs-dir $runs --max-minutes "$minutes" \
        > "$OUT/$name.resume.log" 2>&1 < /dev/null
    bash "$0" run-files "$runs" "$name" ;;
  run-files)
    runs=$1; name=$2
    python3 benchmarks/gpu/run_stats.py "$runs/$name" --json "$OUT/stats_$name.json" | tail -n 14
    python3 benchmarks/gpu/run_report.py "$runs/$name" > "$OUT/report_$name.txt" 2>&1
    tail -n 8 "$OUT/report_$name.txt"
    cp "$runs/$name/lineage.db" "$OUT/lineage_$name.db"
    (cd "$runs/$name" && tar czf "$OUT/kernels_$name.tgz" kernels run.toml)
    tar czf "$OUT/run_$name.tgz" --exclude=scratch --exclude=run.lock -C "$runs" "$name" ;;
  overlap)
    seed=$1; minutes=$2; rng=${3:-7}; target=${4:-gqa}
    if [ "${PARALLEL:-0}" = 1 ]; then  # two GPUs: both at once, each on its GPU and half the CPUs
      half=$(( $(nproc) / 2 ))
      OVERLAP=1 GPU=0 CPUS=0-$((half - 1)) bash "$0" offline "$seed" "$minutes" ov-on "$rng" "$target" &
      OVERLAP=0 GPU=1 CPUS=$half-$((2 * half - 1)) bash "$0" offline "$seed" "$minutes" ov-off "$rng" "$target"
      wait
    else
      OVERLAP=1 bash "$0" offline "$seed" "$minutes" ov-on "$rng" "$target"
      OVERLAP=0 bash "$0" offline "$seed" "$minutes" ov-off "$rng" "$target"
    fi
    runs=${RUNS:-/root/runs}; python3 benchmarks/gpu/run_stats.py --compare $runs/ov-on $runs/ov-off | tee "$OUT/overlap.txt" ;;
  decode)
    timeout 580 python3 benchmarks/gpu/decode_bench.py "$@" --json "$OUT/decode.json" \
        > "$OUT/decode.log" 2>&1; echo "decode rc=$?"; grep -v '^PASS' "$OUT/decode.log" | tail -n 60 ;;
  tests)
    [ $# -gt 0 ] || set -- tests
    timeout "${TESTS_TIMEOUT:-580}" python3 -m pytest -q -m gpu "$@" 2>&1 | tee "$OUT/pytest_gpu.log" | tail -n 30 ;;
  ncu-probe)
    bash "$(dirname "$0")/ncu_sandbox_probe.sh" 2>&1 | tee "$OUT/ncu_probe.txt" ;;
  agent-transcript)
    timeout 590 python3 benchmarks/gpu/agent_transcript.py --out "$OUT" ${1:+--shape "$1"} 2>&1 \
        | tail -n 80 ;;
esac
