#!/usr/bin/env bash
# GPU session 8, one H100, one call: a D=64 non-causal re-sweep of the tuned seed (the one
# class still behind FlexAttention at S=1024 on the H200), compare.py of the final seed beside
# cuDNN/flash/Flex in one process, and eval_speed.py (issue 9's evaluation times on an H100).
set -u
. benchmarks/gpu/setup.sh || exit 1
O=/root/o; mkdir -p $O
pack() { tar czf $OUT/session8.tgz -C $O .; }  # at most 8 files come back: one tarball
nvidia-smi --query-gpu=index,name,driver_version,clocks.max.sm,power.limit --format=csv | tee $O/gpu.txt
python3 -c "import torch,triton;print(torch.__version__,triton.__version__,torch.backends.cudnn.version())" | tee -a $O/gpu.txt
timeout 100 python3 benchmarks/gpu/seed_tune.py sweep --classes D64_NC --json $O/sweep_d64nc.json > $O/sweep_d64nc.log 2>&1
tail -n 17 $O/sweep_d64nc.log; pack
cp seeds/gqa.py /root/gqa_committed.py
python3 benchmarks/gpu/seed_tune.py merge $O/sweep_d64nc.json --seed seeds/gqa.py --write /root/gqa_final.py | tee $O/merge.txt
cp /root/gqa_final.py $O/gqa_final.py
diff -q /root/gqa_final.py seeds/gqa.py > /dev/null && K="seeds/gqa.py" || K="seeds/gqa.py /root/gqa_final.py"
timeout 200 python3 benchmarks/compare.py $K --target gqa --out $O/compare > $O/compare.log 2>&1
tail -n 30 $O/compare.log; pack
timeout 150 python3 benchmarks/gpu/eval_speed.py /root/gqa_final.py --json $O/eval_speed.json 2>&1 | tee $O/eval_speed.log
pack
