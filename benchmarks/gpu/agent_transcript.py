"""A short agent session on a GPU with a scripted model: the transcript of `compile_info`
and `profile` as the model sees them (`bash benchmarks/gpu/run.sh agent-transcript`).

A real `evolve start --operator agent` process (the real openai client over real HTTP
against tests/llm_server.py's scripted server, the real evaluator on the GPU) from
seeds/gqa.py, one session: compile_info, profile of one quick-suite shape, an edit of one
CONFIG value, compile_info again (a new evaluation: the source changed), submit. The loop
then evaluates the candidate (max 2 candidates: seed + this one; quick suite, to keep the
call short) and the run ends.

Writes to --out: transcript.json (card, versions, each tool call with its arguments and
the text the model got back), transcript.md (the same, readable), show.txt (`evolve show`
of the submitted candidate: its stored compile info), console.txt (the run's console).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from evaluator import get_target  # noqa: E402
from tests.llm_server import ScriptedLLM, has, tool_call  # noqa: E402

SEED = ROOT / "seeds" / "gqa.py"
EDIT = ('"D64_NC": {"BLOCK_M": 64, "BLOCK_N": 64,', '"D64_NC": {"BLOCK_M": 64, "BLOCK_N": 32,')


def script(shape: str) -> list:
    old, new = EDIT
    return [
        tool_call("compile_info", {}),
        tool_call("profile", {"shape": shape}, check=has("compile info of the working copy")),
        tool_call("edit_kernel", {"old": old, "new": new}, check=has("profile of")),
        tool_call("compile_info", {}, check=has("edited at line")),
        tool_call("submit", {"hypothesis": "BLOCK_N 64->32 for D=64 non-causal (transcript "
                                           "benchmark; the point is the tool answers)"},
                  check=has("compile info of the working copy")),
    ]


def tool_exchanges(requests: list[dict]) -> list[dict]:
    """Each tool call of the session with the first text the model got back for it (later
    requests may carry a shortened copy once the context is trimmed)."""
    calls: dict[str, dict] = {}
    for req in requests:
        for msg in req["body"].get("messages", []):
            for tc in msg.get("tool_calls") or []:
                calls.setdefault(tc["id"], {"tool": tc["function"]["name"],
                                            "arguments": json.loads(tc["function"]["arguments"]
                                                                    or "{}"),
                                            "result": None})
            if msg.get("role") == "tool" and msg.get("tool_call_id") in calls:
                entry = calls[msg["tool_call_id"]]
                if entry["result"] is None:
                    entry["result"] = msg.get("content")
    return list(calls.values())


def card() -> dict:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unavailable: {e}"
    return {"gpu": out(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]),
            "versions": out([sys.executable, "-c", "import torch, triton; print('torch', "
                             "torch.__version__, 'triton', triton.__version__)"]),
            "ncu": out(["bash", "-c", "command -v ncu || echo 'not on PATH'"])}


def markdown(data: dict) -> str:
    lines = ["# Agent transcript: compile_info and profile on a GPU", "",
             f"- card: {data['card']['gpu']}", f"- {data['card']['versions']}",
             f"- ncu: {data['card']['ncu']}",
             f"- run: exit {data['exit_code']}, {data['wall_s']:.0f} s, "
             f"seed {data['seed']}, profiled shape `{data['shape']}`", "",
             "Produced by `bash benchmarks/gpu/run.sh agent-transcript` (scripted model, real "
             "evaluator). Each tool call and the text the model got back:", ""]
    for i, ex in enumerate(data["exchanges"], 1):
        args = json.dumps(ex["arguments"])
        lines += [f"## {i}. `{ex['tool']}` {args if len(args) < 200 else '(long arguments)'}",
                  "", "```text", str(ex["result"]).rstrip(), "```", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs-dir", type=Path, default=Path("/tmp/agent-transcript-runs"))
    ap.add_argument("--shape", default=None, help="quick-suite shape to profile "
                    "(default: the second, a causal D=128 one)")
    ap.add_argument("--timeout", type=float, default=540.0)
    a = ap.parse_args()
    shape = a.shape or [s.name for s in get_target("gqa").suite("quick")][1]
    a.out.mkdir(parents=True, exist_ok=True)
    name = f"transcript-{int(time.time())}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_API_KEY="sk-scripted-not-a-key", NO_COLOR="1", COLUMNS="100")
    t0 = time.monotonic()
    with ScriptedLLM(script(shape)) as srv:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "evolve", "start", "--target", "gqa", "--operator",
                 "agent", "--seed", str(SEED), "--base-url", srv.base_url, "--model",
                 "scripted", "--max-candidates", "2", "--suite", "quick",
                 "--runs-dir", str(a.runs_dir),
                 "--name", name], cwd=ROOT, env=env, capture_output=True, text=True,
                timeout=a.timeout, stdin=subprocess.DEVNULL)
            code, console = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            code, console = 124, f"timed out after {a.timeout:g} s\n{e.stdout or ''}{e.stderr or ''}"
        requests = list(srv.requests)
        errors = [str(e) for e in srv.errors]
    wall = time.monotonic() - t0
    (a.out / "console.txt").write_text(console if isinstance(console, str) else str(console))
    show = subprocess.run([sys.executable, "-m", "evolve", "show", name, "1", "--runs-dir",
                           str(a.runs_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    (a.out / "show.txt").write_text(show.stdout + show.stderr)
    data = {"card": card(), "seed": "seeds/gqa.py", "shape": shape, "exit_code": code,
            "wall_s": wall, "script_errors": errors, "exchanges": tool_exchanges(requests)}
    (a.out / "transcript.json").write_text(json.dumps(data, indent=2))
    (a.out / "transcript.md").write_text(markdown(data))
    print(markdown(data)[-6000:])
    print(f"exit {code}; script errors: {errors or 'none'}; files in {a.out}")
    return 0 if code == 0 and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
