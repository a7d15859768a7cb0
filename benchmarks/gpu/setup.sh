# Source this on the GPU machine (device tool): installs the carried pure-Python wheels
# (GitPython, sqlite-utils and their small deps) that the CUDA image lacks, and puts the
# repo on PYTHONPATH. The image already has torch, triton, numpy, typer, rich, pytest.
# `agent-transcript` also needs the openai client: download it with its dependencies for
# the image's Python (3.12, x86_64; jiter and pydantic-core are binary wheels) into .whl/:
#   pip download openai --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl
# and carry .whl with the device call.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1
mkdir -p "${OUT:-/tmp/out}"
evolve() { python3 -m evolve "$@"; }
