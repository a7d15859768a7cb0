"""Nsight Compute in the profile (evaluator/ncu.py) on CPU: its CSV parsed, its records
validated like any candidate-controlled data, the guard letting trusted code start exactly
the pinned command and nothing else. The real run is in tests/test_profile_gpu.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from evaluator import ProfileResult
from evaluator.ncu import METRICS, command, parse
from evolve.profile_text import profile_lines

ROOT = Path(__file__).resolve().parent.parent

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


def test_the_command_carries_its_request_and_no_secret():
    argv = command("/usr/local/cuda/bin/ncu", {"shape": "B=1", "candidate": "/s/candidate/kernel.py"})
    assert argv[0] == "/usr/local/cuda/bin/ncu" and argv[argv.index("--nvtx-include") + 1] == "evolve/"
    assert ",".join(METRICS) in argv
    assert json.loads(argv[-1]) == {"shape": "B=1", "candidate": "/s/candidate/kernel.py"}
    assert command("ncu", {"target": "x" * 200_000}) is None  # too long for one argument


GUARDED = '''
import json, subprocess, sys
from pathlib import Path
from evaluator import guard
scratch, cand = Path(sys.argv[1]), Path(sys.argv[2])
pinned = [sys.executable, "-c", "print('pinned ran')"]
guard.install(scratch_dir=scratch, candidate_path=cand, commands=[pinned])
out = {}
def attempt(name, fn):
    try:
        out[name] = fn()
    except guard.GuardViolation as e:
        out[name] = "denied: " + str(e)
attempt("trusted_pinned", lambda: subprocess.run(pinned, capture_output=True, text=True).stdout.strip())
attempt("trusted_other", lambda: subprocess.run(pinned[:2] + ["print('other')"], capture_output=True,
                                                text=True).stdout.strip())
import importlib.util
spec = importlib.util.spec_from_file_location("candidate_0", str(cand))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
attempt("candidate_pinned", lambda: mod.run(pinned))
print(json.dumps(out))
'''


def test_guard_lets_trusted_code_start_exactly_the_pinned_command(tmp_path):
    cand = tmp_path / "cand.py"
    cand.write_text("import subprocess\n\n\ndef run(argv):\n"
                    "    return subprocess.run(argv, capture_output=True, text=True).stdout\n")
    (tmp_path / "s").mkdir()
    r = subprocess.run([sys.executable, "-c", GUARDED, str(tmp_path / "s"), str(cand)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                            "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    out = got, r.stderr[-2000:]
    assert got["trusted_pinned"] == "pinned ran", out
    assert got["trusted_other"].startswith("denied: runtime guard: subprocess.Popen denied"), out
    assert got["candidate_pinned"].startswith("denied:"), out
