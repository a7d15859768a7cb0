"""The `evolve` command line: builds the typer app from the modules in evolve/commands/."""

from __future__ import annotations

import inspect

import typer

from evolve.commands import (
    bench_cmd,
    dashboard_cmd,
    eval_cmd,
    export_cmd,
    knowledge_cmd,
    llm_cmd,
    run_cmds,
)

HELP = """Evolve Triton attention kernels.

A variation operator (an LLM coding agent, or the offline operator when no LLM is
configured) proposes kernels; an isolated evaluator checks them against a trusted
reference and times them against torch SDPA (cuDNN); the lineage lives in
runs/<name>/ (SQLite + git). Start with:  evolve start --target gqa
"""


def reflow(text: str | None) -> str | None:
    """Join the lines of each paragraph, so help is wrapped to the terminal (no word stranded
    on a line of its own by a hard break written for another width)."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _reflow_all(app: typer.Typer) -> None:
    for info in app.registered_commands:
        info.help = reflow(info.help or inspect.getdoc(info.callback))
    for group in app.registered_groups:
        group.help = reflow(group.help or (group.typer_instance.info.help if group.typer_instance else None))
        if group.typer_instance:
            _reflow_all(group.typer_instance)


def build_app() -> typer.Typer:
    app = typer.Typer(help=reflow(HELP), no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    for module in (eval_cmd, run_cmds, knowledge_cmd, export_cmd, dashboard_cmd, bench_cmd,
                   llm_cmd):
        module.register(app)
    _reflow_all(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
