"""Nsight Compute in the profile (evaluator/ncu.py) on CPU: its CSV parsed, its records
validated like any candidate-controlled data, and its process of its own run with a
stand-in ncu: sandboxed, on a copy of the candidate and the worker's Triton cache, every
failure a note. The real run is in tests/test_profile_gpu.py."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evaluator import ProfileResult, ncu, sandbox
from evaluator.ncu import METRICS, command, counters, parse
from evolve.profile_text import profile_lines

# as ncu 2025.x prints it with --csv --metrics (other lines: its own and the child's)
CSV = textwrap.dedent('''\
    ==PROF== Connected to process 4242 (/usr/bin/python3.12)
    ==PROF== Profiling "_attn_fwd" - 0: 0%....50%....100% - 9 passes
    ==PROF== Disconnected from process 4242
    "ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
    "0","4242","python3.12","127.0.0.1","_attn_fwd","1","7","(128, 1, 1)","(1024, 1, 1)","0","9.0","Command line profiler metrics","dram__throughput.avg.pct_of_peak_sustained_elapsed","%","8.41"
    "0","4242","python3.12","127.0.0.1","_attn_fwd","1","7","(128, 1, 1)","(1024, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","msecond","1.05"
    "0","4242","python3.12","127.0.0.1","_attn_fwd","1","7","(128, 1, 1)","(1024, 1, 1)","0","9.0","Command line profiler metrics","launch__registers_per_thread","register/thread","255"
    "0","4242","python3.12","127.0.0.1","_attn_fwd","1","7","(128, 1, 1)","(1024, 1, 1)","0","9.0","Command line profiler metrics","sm__warps_active.avg.pct_of_peak_sustained_active","%","12.37"
    "1","4242","python3.12","127.0.0.1","_fill","1","7","(256, 1, 1)","(8, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","2,112"
    child done
    ''')


def test_ncu_csv_is_parsed_per_kernel_in_microseconds():
    got = parse(CSV)
    assert [k["name"] for k in got] == ["_attn_fwd", "_fill"]
    m = got[0]["metrics"]
    assert m["gpu__time_duration.sum"] == 1050.0  # msecond -> us
    assert m["launch__registers_per_thread"] == 255.0
    assert m["sm__warps_active.avg.pct_of_peak_sustained_active"] == 12.37
    assert got[1]["metrics"]["gpu__time_duration.sum"] == 2.112  # "2,112" nsecond
    assert parse("==ERROR== ERR_NVGPUCTRPERM - no permission\n") == []


def test_counters_are_validated_and_shown():
    rec = {"shape": "S", "available": True, "tool": "cuda-events + Nsight Compute", "event_ms": 1.1,
           "counters": [*parse(CSV),
                        {"name": "forged", "metrics": {"made.up": 1.0, "gpu__time_duration.sum": float("inf")}},
                        "junk"]}
    p = ProfileResult.from_dict(rec)
    assert [c.name for c in p.counters] == ["_attn_fwd", "_fill"]  # nothing known and finite: dropped
    text = "\n".join(profile_lines(p.to_dict()))
    assert "achieved occupancy" in text and "12.4 %" in text and "1050.0 us" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_the_command_is_ncu_over_the_child_with_its_request_file():
    argv = command("/usr/local/cuda/bin/ncu", Path("/s/request.json"))
    assert argv[0] == "/usr/local/cuda/bin/ncu" and argv[argv.index("--nvtx-include") + 1] == "evolve/"
    assert ",".join(METRICS) in argv
    i = argv.index("-I")
    assert argv[i - 1] == sys.executable and "ncu_child" in argv[i + 2] and argv[-1] == "/s/request.json"


# A stand-in for ncu: reports what it sees (in the "Kernel Name" of one CSV row, the only
# channel back) the way the real one would run its child: in the sandbox, with the request
FAKE_NCU = """#!{python}
import csv, io, json, os, socket, sys
req = json.load(open(sys.argv[-1]))
seen = {{"req": req, "cwd": os.getcwd(), "source": open(req["candidate"]).read(),
        "cache": sorted(os.listdir(os.environ["TRITON_CACHE_DIR"])),
        "ifaces": sorted(n for _, n in socket.if_nameindex()),
        "secret": "OPENAI_API_KEY" in os.environ, "child": sys.argv[-5:-1]}}
try:
    open({outside!r}, "w").write("x")
    seen["outside"] = "written"
except OSError:
    seen["outside"] = "denied"
if {fail!r}:
    open(os.path.join(req["out_dir"], "child.log"), "w").write("[ncu-child] RuntimeError: boom\\n")
    print("==ERROR== The application returned an error code (3).")
    sys.exit(1)
out = io.StringIO()
w = csv.writer(out, quoting=csv.QUOTE_ALL)
w.writerow(["ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value"])
w.writerow(["0", json.dumps(seen), "gpu__time_duration.sum", "usecond", "12.5"])
print("==PROF== Disconnected from process 1")
print(out.getvalue())
"""


def _fake_ncu(tmp_path: Path, fail: bool = False) -> Path:
    exe = tmp_path / "ncu"
    exe.write_text(FAKE_NCU.format(python=sys.executable, outside=str(tmp_path / "outside"), fail=fail))
    exe.chmod(0o755)
    return exe


def _cache(tmp_path: Path) -> Path:
    cache = tmp_path / "worker_cache"
    (cache / "abc123").mkdir(parents=True)
    (cache / "abc123" / "_attn_fwd.cubin").write_bytes(b"\0cubin")
    return cache


REQUEST = {"target": {"name": "gqa"}, "timing": {}, "shape": "B=1", "kind": "normal"}


@pytest.mark.skipif("bwrap" not in sandbox.available_modes(), reason="no bwrap on this host")
def test_counters_come_from_a_sandboxed_process_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLVE_SANDBOX", "bwrap")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    cand = tmp_path / "kernel.py"
    cand.write_text("def attention(q, k, v):\n    return q\n")
    kernels, note = counters(str(_fake_ncu(tmp_path)), candidate=cand, request=REQUEST, gpu=None,
                             triton_cache=_cache(tmp_path))
    assert note == "" and len(kernels) == 1, note
    assert kernels[0]["metrics"] == {"gpu__time_duration.sum": 12.5}
    seen = json.loads(kernels[0]["name"])
    assert seen["source"] == cand.read_text()  # a copy of the checked source ...
    assert seen["req"]["candidate"] != str(cand) and seen["req"]["candidate"].startswith(seen["req"]["scratch"])
    assert {k: seen["req"][k] for k in REQUEST} == REQUEST
    assert seen["cache"] == ["abc123"]  # ... and what the worker compiled
    assert seen["ifaces"] == ["lo"] and seen["outside"] == "denied" and not seen["secret"]
    assert seen["child"][0] == sys.executable and "ncu_child" in seen["child"][3]
    assert not (tmp_path / "outside").exists()
    assert not Path(seen["req"]["scratch"]).exists()  # removed afterwards


@pytest.mark.skipif("bwrap" not in sandbox.available_modes(), reason="no bwrap on this host")
def test_a_failed_profile_is_a_note_with_the_child_s_last_words(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLVE_SANDBOX", "bwrap")
    cand = tmp_path / "kernel.py"
    cand.write_text("x = 1\n")
    kernels, note = counters(str(_fake_ncu(tmp_path, fail=True)), candidate=cand, request=REQUEST, gpu=None)
    assert kernels == [] and note.startswith("Nsight Compute gave no counters: ==ERROR==")
    assert note.endswith("child: [ncu-child] RuntimeError: boom"), note
    slow = tmp_path / "slow"
    slow.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    slow.chmod(0o755)
    monkeypatch.setattr(ncu, "TIMEOUT_S", 2.0)
    t0 = time.monotonic()
    kernels, note = counters(str(slow), candidate=cand, request=REQUEST, gpu=None)
    assert kernels == [] and note == "Nsight Compute: no answer within 2 s" and time.monotonic() - t0 < 30


def test_without_a_network_namespace_ncu_is_not_run(tmp_path, monkeypatch):
    """The child keeps TCP for ncu's link (Landlock ``profiler``): only inside a network
    namespace of its own (bwrap, unshare)."""
    monkeypatch.setenv("EVOLVE_SANDBOX", "none")
    cand = tmp_path / "kernel.py"
    cand.write_text("x = 1\n")
    kernels, note = counters(str(_fake_ncu(tmp_path)), candidate=cand, request=REQUEST, gpu=None)
    assert kernels == [] and "needs a network namespace of its own" in note and "has none" in note


def test_counters_join_the_profile_validated():
    p = ProfileResult("S", available=True, tool="cuda-events + torch.profiler", note="")
    p.add_counters([*parse(CSV), {"name": "forged", "metrics": {"x": 1.0}}], "")
    assert [c.name for c in p.counters] == ["_attn_fwd", "_fill"]
    assert p.tool == "cuda-events + torch.profiler + Nsight Compute"
    q = ProfileResult("S", available=True, tool="cuda-events")
    q.add_counters([], "Nsight Compute gave no counters: ERR_NVGPUCTRPERM")
    assert q.counters == [] and q.tool == "cuda-events" and "ERR_NVGPUCTRPERM" in q.note
