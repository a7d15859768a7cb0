"""Where the dashboard looks for runs: `--runs DIR` after `--` on the streamlit command line,
else the EVOLVE_RUNS_DIR environment variable, else ./runs (`evolve dashboard` passes `--runs`)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

ENV_RUNS = "EVOLVE_RUNS_DIR"


def runs_dir_from_args(argv: list[str], env: Mapping[str, str]) -> Path:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs", default=None)
    args, _ = parser.parse_known_args(argv)
    return Path(args.runs or env.get(ENV_RUNS) or "runs").expanduser()
