#!/usr/bin/env bash
# Which part of the worker's confinement stops Nsight Compute (evaluator/ncu.py)?
# Each variant profiles one bf16 matmul with the metrics ncu.py asks for and prints
# whether the child started CUDA ("child ok") and ncu's errors. Session 3 (H100): plain,
# a bare network namespace and read-only remounts worked; Landlock (writes only to a
# scratch dir, TCP and abstract-UNIX rules on) gave cudaGetDeviceCount error 304, and the
# worker with TCP/abstract-UNIX lifted still did; a new process's cuInit also writes
# /proc/<pid>/task/<tid>/comm, which Landlock denies (the variants with /proc show it).
# Session 4 (H100): the profile process of its own (the last variants: ncu unconfined,
# the child confining itself after cuInit) passed tests/test_profile_gpu.py; this probe
# stays for hosts where it does not.
# Run: bash benchmarks/gpu/run.sh ncu-probe
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
PY=$(command -v python3)
CHILD="import torch;a=torch.randn(2048,2048,device='cuda',dtype=torch.bfloat16);a@a;torch.cuda.synchronize();print('child ok')"
MET=$(python3 -c "import sys;sys.path.insert(0,'.');from evaluator.ncu import METRICS;print(','.join(METRICS))")
S=$(mktemp -d); mkdir -p "$S/tmp" "$S/work"
# landlock with extra writable paths: $1 = comma list of paths ("" none), $2 = 1 for the
# worker's "profiler" setting (TCP and abstract UNIX allowed)
ll() {
  local extra=$1 ipc=$2; shift 2
  (cd "$S/work" && TMPDIR="$S/tmp" timeout 60 "$PY" - "$S" "$extra" "$ipc" "$@" <<'PYEOF'
import os, subprocess, sys
from pathlib import Path
sys.path.insert(0, os.environ.get("REPO", "."))
from evaluator import sandbox
scratch, extra, ipc = sys.argv[1], [p for p in sys.argv[2].split(",") if p], sys.argv[3] == "1"
orig = sandbox._restrict
def restrict(libc, ruleset, sc, abi, fs, net, scoped):
    for p in extra:
        sandbox._allow(libc, ruleset, Path(p), fs)
    return orig(libc, ruleset, sc, abi, fs, net, scoped)
sandbox._restrict = restrict
print("landlock:", sandbox.apply_in_process(Path(scratch), profiler=ipc), flush=True)
sys.exit(subprocess.run(sys.argv[4:]).returncode)
PYEOF
  )
}
v() { echo "=== $1"; shift; "$@" 2>&1 | grep -E "landlock:|ERROR|child ok|Error|error|warps_active" | head -n 6 | cut -c1-200; }
export REPO=$PWD
N="$NCU --csv --metrics $MET --launch-count 2 --target-processes all"
v "landlock, no ncu (a new CUDA process)"  ll "" 0 $PY -c "$CHILD"
v "landlock, /proc only (no ncu)"         ll /proc 0 $PY -c "$CHILD"
v "landlock profiler (the worker's)"      ll "" 1 $N $PY -c "$CHILD"
v "landlock profiler, /tmp rw"            ll /tmp 1 $N $PY -c "$CHILD"
v "landlock profiler, /tmp + /dev/shm"    ll /tmp,/dev/shm 1 $N $PY -c "$CHILD"
v "landlock profiler, /proc"              ll /proc 1 $N $PY -c "$CHILD"
v "no landlock, ncu (the profile process)" $N $PY -c "$CHILD"
# The profile process of its own: ncu unconfined, its child starts CUDA and then confines
# itself (Landlock), as the worker does; $1 = 1 for the profiler rules (TCP, abstract UNIX)
conf() { echo "import os,sys,torch;from pathlib import Path;sys.path.insert(0,'$REPO');torch.zeros(1,device='cuda');torch.cuda.synchronize();from evaluator import sandbox;print('landlock:',sandbox.apply_in_process(Path(os.environ['TMPDIR']).parent,profiler=$1),flush=True);a=torch.randn(2048,2048,device='cuda',dtype=torch.bfloat16);a@a;torch.cuda.synchronize();print('child ok')"; }
v "ncu unconfined, child confines after cuInit (profiler rules)" env TMPDIR="$S/tmp" $N $PY -c "$(conf True)"
v "ncu unconfined, child confines after cuInit (worker rules)"   env TMPDIR="$S/tmp" $N $PY -c "$(conf False)"
# the same under the evaluator's own wrapper (unshare or bwrap, whichever this host uses)
wrapped() { "$PY" - "$S" "$@" <<'PYEOF'
import os, subprocess, sys
from pathlib import Path
sys.path.insert(0, os.environ["REPO"])
from evaluator import sandbox
scratch = Path(sys.argv[1]) / "wrapped"
plan = sandbox.plan(sys.argv[2:], scratch_dir=scratch, gpu=0,
                    read_only_paths=[sandbox.REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix)])
print("landlock: wrapper", plan.mode, flush=True)
sys.exit(subprocess.run(plan.argv, env=plan.env, cwd=scratch, timeout=90).returncode)
PYEOF
}
v "wrapper + ncu, child confines after cuInit (profiler rules)" wrapped $N $PY -c "$(conf True)"
v "wrapper + ncu, child confines after cuInit (worker rules)"   wrapped $N $PY -c "$(conf False)"
