"""The `evolve` command line: builds the typer app from the modules in evolve/commands/."""

from __future__ import annotations

import typer

from evolve.commands import (
    bench_cmd,
    dashboard_cmd,
    eval_cmd,
    export_cmd,
    knowledge_cmd,
    run_cmds,
)

HELP = """Evolve Triton attention kernels.

A variation operator (an LLM coding agent, or the offline operator when no LLM is
configured) proposes kernels; an isolated evaluator checks them against a trusted
reference and times them against torch SDPA (cuDNN); the lineage lives in
runs/<name>/ (SQLite + git). Start with:  evolve start --target gqa
"""


def build_app() -> typer.Typer:
    app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    for module in (eval_cmd, run_cmds, knowledge_cmd, export_cmd, dashboard_cmd, bench_cmd):
        module.register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
