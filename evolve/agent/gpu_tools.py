"""The agent's GPU tools, `compile_info` and `profile`: both evaluate the working copy in
the evaluator's sandboxed worker through `ctx.evaluate` (the orchestrator never compiles
or runs a kernel) and count against the session's evaluation budget; on the CPU
interpreter both answer at once that there is no GPU (nothing is compiled there).

`compile_info` reuses the session's latest evaluation when it evaluated this same source
(every GPU evaluation carries the compile info), else runs a quick-suite evaluation.
`profile` runs an evaluation of the suite holding the named shape with an
`evaluator.ProfileRequest` for it.
"""

from __future__ import annotations

from typing import Any

from evaluator import ProfileRequest, get_target
from evolve.agent.tools import Tool, ToolError
from evolve.profile_text import compile_info_lines, overlap_lines, profile_lines
from evolve.records import sha256_text

NO_GPU = ("no GPU here: this run evaluates on the CPU interpreter, which compiles no "
          "Triton kernels and measures no GPU time, so there are no registers, spills, "
          "shared memory or profiler counters to report. compile_info and profile work "
          "in a run on a CUDA GPU.")
COMPILE_SUITE = "quick"
PROFILE_SUITES = ("quick", "default")


def _gpu(st: Any) -> bool:
    return bool(st.run.config.gpu)


def _evaluate(st: Any, suite: str, profile: ProfileRequest | None = None) -> Any:
    """One real evaluation of the working copy, recorded like the evaluate tool's."""
    b = st.budget
    if b.evaluations_left() <= 0:
        raise ToolError(f"evaluation budget used up ({b.evaluations} of {b.max_evaluations});"
                        " submit or give_up")
    b.evaluations += 1
    res = st.ctx.evaluate(st.source, suite) if profile is None else \
        st.ctx.evaluate(st.source, suite, profile=profile)
    st.record_evaluation(res)
    return res


def _outcome(res: Any, st: Any) -> str:
    d = res.to_dict()
    left = st.budget.evaluations_left()
    if d["status"] == "ok":
        line = f"evaluation: ok, score {d['score']:.3f} on the {d['suite']} suite"
    else:
        f = d.get("failure") or {}
        line = (f"evaluation: rejected ({f.get('class')}): "
                f"{' '.join(str(f.get('message', '')).split())[:300]}")
    return f"{line}\n({left} evaluation{'s' if left != 1 else ''} left in this session)"


def compile_info(st: Any, a: dict[str, Any]) -> str:
    if not _gpu(st):
        return NO_GPU
    if st.evals and st.evaluated_sha == sha256_text(st.source):
        res = st.evals[-1]
        how = (f"your latest evaluation\nof this same source ({res.suite} suite); "
               "nothing was evaluated now")
    else:
        res = _evaluate(st, COMPILE_SUITE)
        how = (f"a new {COMPILE_SUITE}-suite evaluation\n"
               "(counted against your evaluation budget)")
    d = res.to_dict()
    lines = ["compile info of the working copy, from " + how,
             "one row per Triton specialisation compiled for the suite's shapes:",
             *compile_info_lines(d.get("compile_info") or [])]
    return "\n".join(lines) + "\n" + _outcome(res, st)


def _suite_of(st: Any, shape: str) -> str:
    target = get_target(st.run.config.target)
    names: list[str] = []
    for suite in PROFILE_SUITES:
        if suite in target.suites:
            here = [s.name for s in target.suite(suite)]
            if shape in here:
                return suite
            names += [n for n in here if n not in names]
    raise ToolError(f"unknown shape {shape!r}; shapes: {', '.join(names)}")


def profile(st: Any, a: dict[str, Any]) -> str:
    if not _gpu(st):
        return NO_GPU
    suite = _suite_of(st, a["shape"])
    res = _evaluate(st, suite, ProfileRequest(a["shape"], counters=True))
    d = res.to_dict()
    lines = [f"profile of the working copy: a {suite}-suite evaluation that profiles one "
             "shape\n(counted against your evaluation budget)"]
    if d.get("profile"):
        lines += profile_lines(d["profile"])
    else:
        lines.append("no profile: the evaluation ended before it")
    lines += overlap_lines(d.get("compile_info") or [])
    return "\n".join(lines) + "\n" + _outcome(res, st)


def tools() -> list[Tool]:
    obj = {"type": "object", "additionalProperties": False}
    return [
        Tool("compile_info", "Per Triton specialisation of the working copy (GPU runs): "
             "registers, spills, shared memory, num_warps, num_stages, compile time. Uses "
             "your latest evaluation if it was of this same source, else evaluates on the "
             "quick suite (counts against the budget).",
             {**obj, "properties": {}, "required": []}, compile_info),
        Tool("profile", "Profile the working copy on one named shape of the suite (GPU "
             "runs): its time (L2 flushed and warm), the GPU kernels it launches with "
             "their mean times and, where Nsight Compute is installed, each kernel's "
             "counters (achieved occupancy, tensor-pipe use, DRAM and SM throughput, "
             "registers); for kernels that wait with a wgmma group in flight (Gluon), how "
             "many exp2s the SASS issues meanwhile (0: the overlap is gone). Runs one "
             "evaluation (counts against the budget).",
             {**obj, "properties": {"shape": {"type": "string", "minLength": 1,
                                              "description": "a shape name as the "
                                              "evaluation's per-shape table shows it"}},
              "required": ["shape"]}, profile),
    ]
