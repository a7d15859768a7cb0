"""`evolve start --operator agent` end to end on CPU against the scripted server:
a real CLI process, the real openai client over HTTP, the real evaluator, SQLite, git."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evolve.agent.render import candidate_line
from evolve.run import RunHandle
from tests.agent_support import SECRET, config_edit, seed_source
from tests.llm_server import ScriptedLLM, has, http_error, text, tool_call

LEAKY_KERNEL = '''
import os
import torch

ENV = dict(os.environ)


def attention(q, k, v, *, causal=False, sm_scale=None):
    with open("leak.txt", "w") as f:
        f.write(repr(ENV))
    print(ENV)
    return q.clone()
'''


def _script() -> list:
    old, new = config_edit(seed_source())
    return [
        # session 1: look around, consult knowledge, edit, submit (the loop evaluates it)
        http_error(500),
        tool_call("lineage", {"view": "top", "n": 5}, usage=(2100, 40)),
        tool_call("read_kernel", {}, check=has("#0 [best] ok"), usage=(2300, 20)),
        tool_call("search_knowledge", {"query": "online softmax exp2", "k": 3},
                  check=has("def attention"), usage=(7000, 30)),
        tool_call("read_knowledge", {"doc": "fa2-online-softmax"}, check=has("[doc]"),
                  usage=(7400, 30)),
        tool_call("edit_kernel", {"old": old, "new": new}, usage=(9000, 60)),
        tool_call("submit", {"hypothesis": "BLOCK_N 64->32 (D64, non-causal): expect higher "
                                           "occupancy on short sequences"},
                  check=has("edited at line"), usage=(9100, 40)),
        # session 2: a kernel that tries to dump the environment (the key must stay out)
        tool_call("write_kernel", {"source": LEAKY_KERNEL}, usage=(3000, 200)),
        tool_call("submit", {"hypothesis": "copy q (exfiltration attempt)"},
                  check=has("written:"), usage=(3300, 20)),
    ]


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    out = [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]
    # git objects are zlib-compressed: read every object's content through git itself
    dump = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"],
                          cwd=root / "kernels", capture_output=True, check=True).stdout
    out.append((root / "kernels" / "<all git objects>", dump))
    return out


@pytest.mark.slow  # two smoke evaluations (seed + candidate 1): ~1-3 min on 2 cores
def test_start_agent_end_to_end(tmp_path):
    with ScriptedLLM(_script()) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(OPENAI_API_KEY=SECRET, EVOLVE_AGENT_BACKOFF_S="0.01", NO_COLOR="1")
        proc = subprocess.run(
            [sys.executable, "-m", "evolve", "start", "--target", "gqa", "--operator", "agent",
             "--base-url", srv.base_url, "--max-candidates", "3", "--runs-dir",
             str(tmp_path / "runs"), "--name", "e2e"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        srv.assert_clean()
        assert srv.remaining == 0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    root = tmp_path / "runs" / "e2e"
    run = RunHandle.open(root)
    try:
        cands = run.store.candidates()
        sessions = {s.id: s for s in run.store.sessions()}
        assert [c.id for c in cands] == [0, 1, 2]
        seed, c1, c2 = cands
        assert seed.status == "ok" and c1.operator == c2.operator == "agent"
        # candidate 1: the edited seed, evaluated by the loop, linked to its session
        assert c1.status == "ok" and c1.parent_id == 0, (c1.failure_class, c1.failure_message)
        assert c1.hypothesis.startswith("BLOCK_N 64->32")
        s1 = sessions[c1.session_id]
        assert s1.outcome == "submitted" and s1.parent_id == 0 and s1.tool_calls == 6
        assert (c1.tokens_in, c1.tokens_out) == (s1.tokens_in, s1.tokens_out) == (36900, 220)
        assert c1.cost_usd == s1.cost_usd > 0  # gpt-4.1-mini is in the default price table
        steps = run.store.agent_steps(s1.id)
        assert [s.tool for s in steps if s.role == "tool"] == [
            "lineage", "read_kernel", "search_knowledge", "read_knowledge", "edit_kernel",
            "submit"]
        assert c1.changes["agent"]["knowledge"] == ["fa2-online-softmax"]
        assert run.repo.parents_of(1) == [seed.commit_sha]
        # candidate 2: submitted, failed evaluation, recorded with its class (not dropped)
        assert c2.status == "rejected" and c2.failure_class == "forbidden"
        assert sessions[c2.session_id].outcome == "submitted"
    finally:
        run.close()
    # the API key is nowhere in the run directory (db, run.toml, logs, git objects)
    # and never reached a candidate process (the leaky kernel would have written it)
    assert not list(root.rglob("leak.txt"))
    secret = SECRET.encode()
    leaks = [str(p) for p, data in _all_bytes(root) if secret in data]
    assert leaks == []
    assert SECRET not in out


@pytest.mark.slow  # three smoke evaluations (seed, the agent's probe, candidate 1)
def test_unsubmitted_verified_work_becomes_a_candidate(tmp_path):
    """A model that evaluates ok and then only talks ("final answer") without submit: the
    run records its evaluated state as candidate 1, marked unsubmitted, shown by `show`."""
    old, new = config_edit(seed_source())
    done = "The evaluation passed, BLOCK_N is 32 now. That's my final answer."
    with ScriptedLLM([tool_call("edit_kernel", {"old": old, "new": new}),
                      tool_call("evaluate", {}, check=has("edited at line")),
                      *[text(done) for _ in range(4)]]) as srv:  # 3 nudges (the default)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(OPENAI_API_KEY=SECRET, EVOLVE_AGENT_BACKOFF_S="0.01", NO_COLOR="1",
                   COLUMNS="100")
        base = [sys.executable, "-m", "evolve"]
        runs = ["--runs-dir", str(tmp_path / "runs")]
        proc = subprocess.run(
            base + ["start", "--target", "gqa", "--operator", "agent", "--base-url",
                    srv.base_url, "--max-candidates", "2", "--name", "keep"] + runs,
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        srv.assert_clean()
        assert srv.remaining == 0
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run = RunHandle.open(tmp_path / "runs" / "keep")
    try:
        seed, c1 = run.store.candidates()
        (s,) = run.store.sessions()
        assert c1.status == "ok" and c1.parent_id == 0 and c1.operator == "agent"
        assert c1.session_id == s.id and s.outcome == "no_tools"
        assert c1.unsubmitted.startswith("no_tools: the model answered without calling a tool")
        assert c1.hypothesis.startswith("(unsubmitted: the session ended no_tools")
        assert run.repo.source_at(1) == seed_source().replace(old, new)
        assert "unsubmitted" in run.repo.trailers_of(1)["Changes"]  # the git lineage too
        assert candidate_line(c1).startswith("#1 [unsubmitted] ok")  # the agent's lineage
    finally:
        run.close()
    show = subprocess.run(base + ["show", "keep", "1"] + runs, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    assert "unsubmitted" in show.stdout and "never called submit" in show.stdout
