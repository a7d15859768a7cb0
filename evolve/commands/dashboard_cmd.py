"""`evolve dashboard`: start the Streamlit app in dashboard/ over a runs directory (read-only)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from evolve.paths import DEFAULT_RUNS_DIR

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
ENV_RUNS = "EVOLVE_RUNS_DIR"  # read by dashboard/app.py when no `-- --runs` is given


def build_command(runs: Path, port: int, headless: bool, address: str | None = None) -> list[str]:
    """The `streamlit run` command line for the dashboard."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.port", str(port), "--server.headless", "true" if headless else "false",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "minimal"]
    if address:
        cmd += ["--server.address", address]
    return cmd + ["--", "--runs", str(runs)]


def dashboard(
    runs: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs", help="directory holding run directories "
                              "(or one run directory)"),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="port to serve on"),
    headless: bool = typer.Option(False, "--headless", help="don't open a browser"),
    address: str = typer.Option(None, "--address", help="address to bind (streamlit's default if unset)"),
) -> None:
    """Watch runs in a browser: trajectory, lineage tree, candidates, failures and cost."""
    runs = runs.expanduser().resolve()
    if runs.exists() and not runs.is_dir():
        typer.echo(f"error: --runs {runs} is a file, not a directory", err=True)
        raise typer.Exit(2)
    if not APP.is_file():
        typer.echo(f"error: dashboard app not found at {APP}", err=True)
        raise typer.Exit(2)
    if not runs.exists():
        typer.echo(f"note: {runs} does not exist yet; the dashboard will wait for runs there", err=True)
    env = dict(os.environ, **{ENV_RUNS: str(runs)})
    typer.echo(f"dashboard on http://{address or 'localhost'}:{port} over {runs} (Ctrl-C to stop)", err=True)
    proc = subprocess.Popen(build_command(runs, port, headless, address), env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # don't orphan the server
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        code = 0
    raise typer.Exit(0 if code < 0 else code)  # < 0: stopped by a signal we forwarded


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
