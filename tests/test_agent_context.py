"""Paged reads, the context budget's bookkeeping, evaluation text and the session brief
(no server: the tools, agent/context.py and the prompts on a real run directory)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from evaluator import EvalResult
from evolve.agent.budget import SessionBudget
from evolve.agent.context import Context, Mark
from evolve.agent.handlers import PAGE_CHARS, SessionState, build_registry
from evolve.agent.prompts import Prompts, session_brief, system_prompt
from evolve.agent.render import eval_text
from tests.agent_support import make_ctx, make_run, seed_source

H100_ENV = {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132, "capability": "9.0",
            "memory_gib": 79.2, "driver": "580.95.05", "cuda": "13.0",
            "torch": "2.11.0+cu130", "triton": "3.6.0", "python": "3.12.3"}


def _state(source: str) -> SessionState:
    ctx = SimpleNamespace(parent=SimpleNamespace(id=7), parent_source=source)
    return SessionState(ctx=ctx, source=source, budget=SessionBudget(40, 6, 10**6))


def _kernel(chars: int) -> str:
    lines, n = [], 0
    while sum(map(len, lines)) < chars:
        n += 1
        lines.append(f"x_{n} = {n}  # {'pad ' * (n % 17)}\n")
    return "".join(lines)


def _body(text: str) -> str:
    """The page's text without its header line and continuation footer."""
    body = text.split("\n", 1)[1]
    return re.sub(r"\n\[lines \d+-\d+ not shown .*\]$", "", body)


def test_a_25k_kernel_reads_whole_in_two_calls():
    src = _kernel(25_000)
    total = src.count("\n")
    st, reg = _state(src), build_registry()
    first = reg.dispatch(st, "read_kernel", "{}")
    head = first.text.splitlines()[0]
    m = re.match(rf"kernel.py, working copy \(parent #7\): lines 1-(\d+) of {total} "
                 rf"\({len(src)} characters in all\)$", head)
    assert m, head
    stop = int(m.group(1))
    assert f"read_kernel(start={stop + 1})]" in first.text.splitlines()[-1]
    assert "truncated" not in first.text and first.mark == Mark("kernel", (1, stop))
    second = reg.dispatch(st, "read_kernel", json.dumps({"start": stop + 1}))
    assert second.text.splitlines()[0].startswith(f"kernel.py, working copy (parent #7): "
                                                  f"lines {stop + 1}-{total} of {total}")
    assert "not shown" not in second.text
    assert _body(first.text) + "\n" + _body(second.text) + "\n" == src
    assert len(_body(first.text)) <= PAGE_CHARS
    # a range, and the errors a model can make
    part = reg.dispatch(st, "read_kernel", '{"start": 3, "end": 5}')
    assert _body(part.text) == "".join(src.splitlines(True)[2:5]).rstrip("\n")
    assert part.text.startswith(f"kernel.py, working copy (parent #7): lines 3-5 of {total}")
    assert part.mark == Mark("kernel", (3, 5))
    assert "past the last line" in reg.dispatch(st, "read_kernel", '{"start": 9999}').text
    assert "before start" in reg.dispatch(st, "read_kernel", '{"start": 5, "end": 4}').text
    small = reg.dispatch(_state("a = 1\nb = 2\n"), "read_kernel", "{}")
    assert small.text.endswith("lines 1-2 of 2 (12 characters in all)\na = 1\nb = 2")
    assert small.mark == Mark("kernel")  # all of it


def test_read_knowledge_by_line_range():
    reg, st = build_registry(), _state("k = 1\n")
    whole = reg.dispatch(st, "read_knowledge", '{"doc": "evaluator-rules"}')
    m = re.match(r"knowledge document evaluator-rules: lines 1-(\d+) of (\d+) ", whole.text)
    assert m and m.group(1) == m.group(2), whole.text[:200]
    n = int(m.group(2))
    part = reg.dispatch(st, "read_knowledge", '{"doc": "evaluator-rules", "start": 2, "end": 4}')
    assert part.text.startswith(f"knowledge document evaluator-rules: lines 2-4 of {n} ")
    assert _body(part.text).splitlines() == _body(whole.text).splitlines()[1:4]
    assert part.mark == Mark("knowledge:evaluator-rules", (2, 4))
    assert st.knowledge_read == ["evaluator-rules"]


def test_marks_cover_ranges_of_one_topic():
    assert Mark("kernel").covers(Mark("kernel", (5, 9)))
    assert Mark("kernel", (1, 20)).covers(Mark("kernel", (5, 9)))
    assert not Mark("kernel", (1, 8)).covers(Mark("kernel", (5, 9)))
    assert not Mark("kernel", (1, 20)).covers(Mark("kernel"))
    assert not Mark("evaluation").covers(Mark("kernel"))


def _answer(msgs, ctx, tool, content, mark, args="{}", note=None):
    cid = f"call_{len(msgs)}"
    msgs.append({"role": "assistant", "content": note,
                 "tool_calls": [{"id": cid, "type": "function",
                                 "function": {"name": tool, "arguments": args}}]})
    msgs.append({"role": "tool", "tool_call_id": cid, "content": content})
    ctx.add(msgs, tool, cid, args, mark)


def test_superseded_outputs_become_stubs_and_notes_stay():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "brief"}]
    ctx = Context(budget_tokens=10**6)
    eval1 = "status: ok\nscore: 1.020  (geomean ...)\n" + "row\n" * 500
    _answer(msgs, ctx, "read_kernel", "page one " * 500, Mark("kernel", (1, 300)), note="N1")
    _answer(msgs, ctx, "read_kernel", "page two " * 500, Mark("kernel", (301, 420)))
    _answer(msgs, ctx, "evaluate", eval1, Mark("evaluation"), note="N2")
    assert ctx.stubbed == 0  # two pages of one text do not supersede each other
    new_src = json.dumps({"source": "y = 2\n" * 200})
    _answer(msgs, ctx, "write_kernel", "written: 1200 characters", Mark("kernel"),
            args=new_src)
    assert msgs[3]["content"].startswith("[superseded by a newer write_kernel: read_kernel "
                                         "output of 4500 characters removed")
    assert msgs[5]["content"].startswith("[superseded") and ctx.stubbed == 2
    assert msgs[7]["content"] == eval1  # a kernel change does not replace an evaluation
    _answer(msgs, ctx, "evaluate", "status: rejected\nfailure: correctness", Mark("evaluation"))
    assert "it said: status: ok | score: 1.020" in msgs[7]["content"]
    _answer(msgs, ctx, "read_kernel", "whole new kernel", Mark("kernel"))
    # the older write_kernel's long argument is replaced, its JSON stays valid
    args = json.loads(msgs[8]["tool_calls"][0]["function"]["arguments"])
    assert args["source"].startswith("[superseded by a newer read_kernel: 1200 characters")
    assert [m["content"] for m in msgs if m["role"] == "assistant" and m["content"]] == \
        ["N1", "N2"]
    assert msgs[:2] == [{"role": "system", "content": "S"}, {"role": "user", "content": "brief"}]


def test_fit_stubs_the_oldest_until_under_budget():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "brief"}]
    ctx = Context(budget_tokens=3000)
    for i in range(6):  # six unrelated outputs of ~1000 tokens each, no supersession
        _answer(msgs, ctx, "lineage", f"out{i} " + "z" * 4000, None, note=f"note {i}")
    assert ctx.estimate(msgs, []) > 6000
    est = ctx.fit(msgs, [])
    assert est <= 3000 and est == (len(json.dumps(msgs)) + len("[]")) // 4  # chars / 4
    kept = [m["content"][:4] for m in msgs if m["role"] == "tool"]
    assert kept[-1] == "out5" and kept[0].startswith("[")  # the newest answer stays
    assert [m["content"] for m in msgs if m["role"] == "assistant"] == \
        [f"note {i}" for i in range(6)]
    # a reported prompt size is the base of the next estimate
    ctx.reported(msgs, [], 2000)
    then = len(json.dumps(msgs))
    msgs.append({"role": "user", "content": "x" * 400})
    assert ctx.estimate(msgs, []) == 2000 + (len(json.dumps(msgs)) - then) // 4


def _result(device: str, score: float) -> dict:
    return EvalResult.from_dict({"status": "ok", "score": score, "device": device,
                                 "suite": "smoke", "shapes": []}).to_dict()


def test_interpreter_scores_are_never_a_percentage():
    cpu = eval_text(_result("interpreter", 0.931), parent_score=0.8)
    assert "%" not in cpu and "not a performance number" in cpu and "vs parent" not in cpu
    gpu = eval_text(_result("cuda", 0.931), parent_score=0.8)
    assert "vs parent: 0.800 -> 0.931 (+16.4%)" in gpu


def _brief(run, **cfg):
    for k, v in cfg.items():
        setattr(run.config, k, v)
    ctx = make_ctx(run)
    brief, _ = session_brief(Prompts.load(), ctx, SessionBudget(40, 6, 1_500_000), 5, 0.25)
    return brief.replace(seed_source().rstrip("\n"), "<parent source>")


def test_brief_names_the_gpu_versions_shapes_rules_budgets_and_knowledge(tmp_path):
    run = make_run(tmp_path, "http://127.0.0.1:9/v1", max_usd=5.0)
    res = EvalResult.from_dict({"status": "ok", "score": 1.0, "device": "cuda",
                                "suite": "default", "env": H100_ENV}).to_dict()
    run.store.db.table("candidates").update(0, {"result_json": json.dumps(res), "score": 1.0})
    brief = _brief(run, gpu=True, suite="default", prescreen_ratio=0.85, rematch_rounds=7)
    for needle in ("GPU: NVIDIA H100 80GB HBM3, 132 SMs, compute capability 9.0",
                   "torch 2.11.0+cu130, triton 3.6.0, CUDA 13.0",
                   "(as recorded by the evaluation of #0)",
                   "## The suite: `default` (24 shapes; evaluate runs it)",
                   "- B=1 Hq=28 Hkv=4 S=16384 D=128 causal bfloat16",
                   "Pre-screen (on in this run)", "below 0.85 x the champion's on\n  the "
                   "same shapes, it is rejected `slow`",
                   "    B=4 Hq=32 Hkv=8 S=4096 D=128 causal bfloat16",  # a quick shape
                   "interleaved over 7 rounds", "exceeds 1 + max(noise, 1%)",
                   "- 40 tool calls, 6 evaluations, 1500000 tokens",
                   "each request is kept under 100000 tokens",
                   "3 nudge(s) for answers without a tool call",
                   "spending cap is $5.00 ($0.25 spent before this session)",
                   "- fa2-online-softmax: Online softmax and the FlashAttention-2 forward",
                   "- triton-interpreter-limits: "):
        assert needle in brief, needle
    assert brief.count("\n- ") >= 24 + 25  # shapes and knowledge documents, one line each
    system = system_prompt(Prompts.load(), run, 0, build_registry())
    assert "under 100000 tokens" in system and "- evaluate(suite?): " in system


def test_cpu_brief_says_interpreter_and_shows_no_percentage(tmp_path):
    from evaluator.env_info import collect  # what a CPU evaluation records
    run = make_run(tmp_path, "http://127.0.0.1:9/v1")
    res = EvalResult.from_dict({"status": "ok", "score": 0.93, "device": "interpreter",
                                "suite": "smoke", "env": collect("cpu"),
                                "shapes": [{"name": "B=1 Hq=4 Hkv=1 S=64", "B": 1, "Hq": 4,
                                            "Hkv": 1, "S": 64, "D": 64, "causal": False,
                                            "dtype": "float16", "ms": 3.0, "speedup": 0.93}]})
    run.store.db.table("candidates").update(0, {"result_json": json.dumps(res.to_dict()),
                                                "score": 0.93})
    brief = _brief(run)
    import torch
    import triton
    assert "No GPU: evaluations run the Triton CPU interpreter" in brief
    assert f"torch {torch.__version__}, triton {triton.__version__}" in brief
    assert "score 0.930, interpreter: not a performance number" in brief
    assert "Pre-screen and rematch: none" in brief and "(2 shapes; evaluate runs it)" in brief
    assert not re.search(r"\d\s*%", brief)


def test_context_budget_is_stored_in_run_toml_and_resume_overrides_it(tmp_path):
    from evolve.driver import UsageError, apply_resume_overrides
    from evolve.run import RunHandle
    run = make_run(tmp_path, "http://127.0.0.1:9/v1", context_tokens=32_000)
    assert run.config.agent.context_tokens == 32_000 and run.config.agent.max_nudges == 3
    root = run.paths.root
    run.close()
    assert RunHandle.open(root).config.agent.context_tokens == 32_000  # from run.toml
    again = RunHandle.open(root, writable=True)
    apply_resume_overrides(again, None, None, None, agent={"context_tokens": 24_000})
    with pytest.raises(UsageError, match="--context-tokens must be at least 8000"):
        apply_resume_overrides(again, None, None, None, agent={"context_tokens": 500})
    again.close()
    assert "context_tokens = 24000" in (root / "run.toml").read_text()
    assert RunHandle.open(root).config.agent.context_tokens == 24_000


def test_best_verified_state_by_device_and_suite():
    def res(score, suite="default"):
        return EvalResult.from_dict({"status": "ok", "score": score, "suite": suite,
                                     "device": "cuda"})
    cfg = SimpleNamespace(gpu=True, suite="default")
    ctx = SimpleNamespace(parent_source="P", run=SimpleNamespace(config=cfg))
    st = SessionState(ctx=ctx, source="P", budget=SessionBudget(40, 6, 10**6))
    assert st.best_verified() is None
    st.passed = [("P", res(2.0)), ("A", res(1.1)), ("B", res(1.3, "quick")), ("C", res(1.05))]
    assert st.best_verified()[0] == "A"  # the best on the run's suite, not the parent
    cfg.gpu = False  # interpreter: the latest, scores are no performance numbers
    assert st.best_verified()[0] == "C"
    st.passed = [("B", res(1.3, "quick"))]
    assert st.best_verified()[0] == "B"
