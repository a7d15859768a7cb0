"""CLI command groups; each module exposes register(app)."""

from typing import NoReturn

import typer


def usage_error(message: str) -> NoReturn:
    """A usage error: one line on stderr, exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
