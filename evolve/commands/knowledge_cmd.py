"""`evolve knowledge search|show|list`: the knowledge base from the command line
(the agent's knowledge tools call the same functions in evolve.knowledge)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown

from evolve.commands import usage_error
from evolve.knowledge import KnowledgeError, list_docs, read, search


def search_cmd(
    query: str = typer.Argument(..., help="Words to look for, e.g. 'pack query heads GQA'."),
    k: int = typer.Option(5, "--k", "-k", help="Number of hits."),
    run: Path | None = typer.Option(None, "--run", help="Also search this run's lessons (a run directory)."),
    all_runs: bool = typer.Option(False, "--all-runs", help="Also search the lessons of every run next to --run (or under ./runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the hits as JSON."),
) -> None:
    """Ranked full-text search over the knowledge documents and run lessons."""
    try:
        hits = search(query, k, run_dir=run, all_runs=all_runs)
    except KnowledgeError as exc:
        usage_error(str(exc))
    if as_json:
        typer.echo(json.dumps([asdict(h) for h in hits], indent=2))
        return
    if not hits:
        typer.echo("no hits")
        return
    for n, h in enumerate(hits, 1):
        where = f" [{h.run}]" if h.run else ""
        typer.echo(f"{n}. {h.kind} {h.id}{where}  (score {h.score:.2f})")
        typer.echo(f"   {h.title}")
        typer.echo(f"   {h.snippet}")


def show_cmd(
    doc: str = typer.Argument(..., help="Document id (file stem), e.g. fa2-online-softmax."),
    raw: bool = typer.Option(False, "--raw", help="Print the markdown as is."),
) -> None:
    """Print one knowledge document."""
    try:
        d = read(doc)
    except KnowledgeError as exc:
        usage_error(str(exc))
    header = (f"# {d.title}\n\nid: {d.id} | tags: {', '.join(d.tags)} | "
              f"applies to: {', '.join(d.applies_to)}\n")
    sources = "\n## Sources\n\n" + "\n".join(f"- {s}" for s in d.sources) + "\n"
    text = header + "\n" + d.body + sources
    if raw:
        typer.echo(text)
    else:
        Console().print(Markdown(text))


def list_cmd() -> None:
    """List the knowledge documents (id and title)."""
    try:
        docs = list_docs()
    except KnowledgeError as exc:
        usage_error(str(exc))
    for d in docs:
        typer.echo(f"{d.id:40s} {d.title}")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Search and read the knowledge base (documents and run lessons).",
                      no_args_is_help=True)
    sub.command("search")(search_cmd)
    sub.command("show")(show_cmd)
    sub.command("list")(list_cmd)
    app.add_typer(sub, name="knowledge")
