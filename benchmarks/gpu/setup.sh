# Source this on the GPU machine (device tool): installs the carried wheels that the CUDA
# image lacks (GitPython, sqlite-utils, the openai client, which `evolve`'s CLI imports, and
# their dependencies), and puts the repo on PYTHONPATH. The image already has torch, triton,
# numpy, typer, rich, pytest. Download them here for the image's Python (3.12, x86_64;
# jiter and pydantic-core are binary wheels) into .whl/, then drop pip's own wheel:
#   python3 -m pip download GitPython sqlite-utils openai --only-binary=:all: \
#       --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl
#   rm -f .whl/pip-*.whl
# and carry .whl with each device call.
# Installed once per machine, under a lock: a `bg` command and the `bg-wait` after it source
# this at the same moment, and two pip installs into one --target break each other.
export PYTHONPATH=/tmp/site:$PWD
$(command -v flock >/dev/null && echo flock /tmp/site.lock) sh -c 'python3 -c "import git, sqlite_utils, openai" 2>/dev/null ||
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl' || return 1
python3 -c "import git, sqlite_utils, openai" 2>/dev/null || {
    echo "setup.sh: the carried .whl lacks GitPython, sqlite-utils or openai: download them as above" >&2
    return 1; }
export PYTHONUNBUFFERED=1
mkdir -p "${OUT:-/tmp/out}"
evolve() { python3 -m evolve "$@"; }
