# Source this on the GPU machine (device tool): installs the carried pure-Python wheels
# (GitPython, sqlite-utils and their small deps) that the CUDA image lacks, and puts the
# repo on PYTHONPATH. The image already has torch, triton, numpy, typer, rich, pytest.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1
mkdir -p "${OUT:-/tmp/out}"
evolve() { python3 -m evolve "$@"; }
