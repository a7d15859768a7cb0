#!/usr/bin/env bash
# GPU session 4: the GPU test suite (fault containment, adversarial GPU cases, seeds, bench),
# then the exported module's --bench beside the evaluator numbers of the same candidate,
# from the committed 20-minute run (lineage.db + kernels.tgz of session 3).
set -u
. benchmarks/gpu/setup.sh || exit 1
R=benchmarks/results/2026-11-26-h200-offline-run
RUNS=/root/runs; RUN=h200-offline-gqa
mkdir -p $RUNS/$RUN && tar xzf $R/kernels.tgz -C $RUNS/$RUN && cp $R/lineage.db $RUNS/$RUN/
python3 -m evolve export $RUN --runs-dir $RUNS --out /root/best_gqa.py > $OUT/export.txt 2>&1; echo "export rc=$?" | tee -a $OUT/export.txt
python3 /root/best_gqa.py --bench --suite default >> $OUT/export.txt 2>&1; tail -30 $OUT/export.txt
# the same candidate through the evaluator on this card, for a same-card comparison
BEST=$(python3 -c "import sqlite3;print(sqlite3.connect('$RUNS/$RUN/lineage.db').execute(\"select candidate_id from events where kind='new_best' order by ts desc limit 1\").fetchone()[0])")
git -C $RUNS/$RUN/kernels show refs/candidates/$BEST:kernel.py > /root/cand_best.py
python3 -m evolve eval /root/cand_best.py --target gqa --suite default --baselines cudnn --json > $OUT/eval_best.json 2>/dev/null
python3 benchmarks/gpu/summarise.py $OUT/eval_best.json
timeout 330 python3 -m pytest -v --tb=short -rfE -m gpu -p no:cacheprovider --timeout 120 \
   tests/test_evaluator_gpu.py tests/test_adversarial.py > $OUT/pytest_gpu.log 2>&1
grep -E "PASSED|FAILED|ERROR|passed|failed|^E " $OUT/pytest_gpu.log | tail -45
