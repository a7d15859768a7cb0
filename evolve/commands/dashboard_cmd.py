"""`evolve dashboard`: start the Streamlit app in dashboard/ over a runs directory (read-only)."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path

import typer

from evolve.commands import usage_error
from evolve.paths import DEFAULT_RUNS_DIR

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
NO_AUTH_WARNING = ("warning: the dashboard has no authentication: anyone who can reach {addr}:{port} "
                   "can read every run, kernel sources and the agent transcripts")


def build_command(runs: Path, port: int, address: str = "127.0.0.1") -> list[str]:
    """The `streamlit run` command line: everything Streamlit would otherwise ask or read from the
    user's home is given here (headless: no e-mail prompt, no browser, no usage statistics)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", address,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal", "--", "--runs", str(runs)]


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def port_taken(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


def can_open_browser() -> bool:
    """Only for a person at a terminal with a display (never under nohup, a service or ssh)."""
    display = sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return display and sys.stdin.isatty()


def _open_when_up(url: str, proc: subprocess.Popen) -> None:
    for _ in range(120):
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1):
                webbrowser.open(url)
                return
        except OSError:
            if proc.poll() is not None:
                return
            time.sleep(0.5)


def dashboard(
    runs: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs", help="directory holding run directories "
                              "(or one run directory)"),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="port to serve on"),
    address: str = typer.Option("127.0.0.1", "--address", help="address to listen on; any other than "
                                "loopback exposes every run (no authentication): prefer an SSH tunnel, "
                                "ssh -L 8501:localhost:8501 HOST"),
    headless: bool = typer.Option(False, "--headless", help="never open a browser (by default one is "
                                  "opened only when there is a display and stdin is a terminal)"),
) -> None:
    """Watch runs in a browser: trajectory, lineage, candidates, workers, failures and cost.
    Serves on 127.0.0.1 only unless --address says otherwise; never asks anything."""
    runs = runs.expanduser().resolve()
    if runs.exists() and not runs.is_dir():
        usage_error(f"--runs {runs} is a file, not a directory")
    if port_taken(address, port):
        usage_error(f"cannot listen on {address}:{port}: the port is in use or the address is not "
                    "this machine's (choose another with --port / --address)")
    if not is_loopback(address):
        typer.echo(NO_AUTH_WARNING.format(addr=address, port=port), err=True)
    if not runs.exists():
        typer.echo(f"note: {runs} does not exist yet; the dashboard will wait for runs there", err=True)
    url = f"http://{'localhost' if is_loopback(address) else address}:{port}"
    typer.echo(f"dashboard on {url} over {runs} (Ctrl-C to stop)", err=True)
    proc = subprocess.Popen(build_command(runs, port, address), stdin=subprocess.DEVNULL)
    if not headless and can_open_browser():
        threading.Thread(target=_open_when_up, args=(url, proc), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # don't orphan the server
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        code = 0
    raise typer.Exit(0 if code < 0 else code)  # < 0: stopped by a signal we forwarded


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
