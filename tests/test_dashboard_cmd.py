"""`evolve dashboard` as a user starts it: no prompt and nothing written into HOME, serving within
10 s with stdin from /dev/null, listening on loopback only unless told otherwise (then one
warning line), and a clear error when the port is taken (issues 18 and 23)."""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from pathlib import Path

import pytest

from dashboard_fixture import free_port, start, stop, wait_healthy
from evolve.commands.dashboard_cmd import APP, build_command


def listening(port: int) -> list[ipaddress._BaseAddress]:
    """Addresses with a socket in LISTEN state on `port`, read from /proc/net/tcp{,6}."""
    out = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            hexaddr, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:
                continue
            raw = bytes.fromhex(hexaddr)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            out.append(ipaddress.ip_address(raw))
    return out


def test_first_time_user_gets_a_loopback_server_within_10_s(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    proc = start(["--runs", str(tmp_path / "runs"), "--port", str(port)], home)
    try:
        took = wait_healthy(f"http://127.0.0.1:{port}", proc, 10.0)
        addrs = listening(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        _, err = stop(proc)
    assert took < 10.0
    assert addrs and all(a.is_loopback for a in addrs), addrs  # nothing on 0.0.0.0, :: or an interface
    assert "Email" not in err and "warning" not in err.lower(), err
    assert list(home.iterdir()) == []  # nothing written into the user's home


def test_non_loopback_address_prints_one_warning(tmp_path):
    port = free_port()
    proc = start(["--runs", str(tmp_path), "--port", str(port), "--address", "0.0.0.0"], tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 60.0)
        addrs = listening(port)
    finally:
        _, err = stop(proc)
    assert ipaddress.ip_address("0.0.0.0") in addrs  # the /proc reader sees a wildcard listener
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no authentication" in warnings[0] and "transcripts" in warnings[0], err


def test_port_taken_is_one_clear_line_and_exit_2(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = start(["--runs", str(tmp_path), "--port", str(port)], tmp_path)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and err.startswith("error: cannot listen on 127.0.0.1:") and "in use" in err


def test_command_line_never_prompts(tmp_path):
    cmd = build_command(tmp_path, 8999)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP) and Path(cmd[4]).is_file()
    opts = dict(zip(cmd[5:-3:2], cmd[6:-3:2]))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8999"
    assert opts["--server.headless"] == "true" and opts["--browser.gatherUsageStats"] == "false"
    assert cmd[-3:] == ["--", "--runs", str(tmp_path)]


@pytest.mark.parametrize("args", [["--port", "70000"], ["--runs", "{file}"]])
def test_usage_errors_exit_2(tmp_path, args):
    f = tmp_path / "file"
    f.write_text("x")
    proc = start([a.format(file=f) for a in args], tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.strip()
