"""`evolve start / resume / status / best / show`: run an evolution and inspect it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from evolve.config import AgentConfig, ConfigError
from evolve.driver import (
    StartOptions,
    UsageError,
    apply_resume_overrides,
    check_resume_host,
    create_run,
    drive,
)
from evolve.gitrepo import RepoError
from evolve.paths import DEFAULT_RUNS_DIR
from evolve.report import (
    candidate_panel,
    compile_info_table,
    diff_view,
    make_console,
    run_summary,
    runs_table,
    shapes_table,
    source_view,
    workers_table,
)
from evolve.run import RunDirError, RunHandle, list_runs, resolve_run
from evolve.lock import RunLockedError
from evolve.store import StoreError

RUNS_DIR_HELP = "directory holding run directories"
PROPOSERS_HELP = ("variation sessions in flight at once, each from its own parent selection "
                  "(agent sessions mostly wait on the LLM; default 1)")
GPUS_HELP = ("GPUs for evaluation workers, one worker each: '0,1' or 'all' (default: all "
             "visible GPUs; without a GPU one interpreter worker)")
EXECUTOR_HELP = ("where evaluations run: local (a thread per GPU here) or ray (an actor per "
                 "GPU; needs the package's ray extra)")
OVERLAP_HELP = ("per GPU, compile the next candidate (CPU; two at once with 16+ CPUs per "
                "GPU) while one is timed; --no-overlap: one evaluation at a time (stored in "
                "run.toml)")
RAY_ADDRESS_HELP = "--executor ray: address of an existing Ray cluster (default: a local Ray)"
CONTEXT_HELP = ("agent: keep each request under this many tokens (older tool outputs become "
                "stubs; default 100000; lower it for a local server's context length)")
API_HELP = ("agent: auto | chat | responses. auto: the Responses API on OpenAI's endpoint, "
            "Chat Completions on a custom --base-url; switches once if the endpoint asks")
EFFORT_HELP = ("agent: reasoning effort sent to the model (none, minimal, low, medium, high, "
               "xhigh; default: not sent)")
PRICE_HELP = ("agent: USD per million tokens as IN,OUT or IN,OUT,CACHED (overrides the price "
              "table; needed for --max-usd with an unpriced model)")
LIMIT_HELP = "agent: minutes one streamed model request may take in all"
WAIT_HELP = ("agent: minutes to wait out rate limits and server errors per request before "
             "the session gives up (the run pauses meanwhile)")
TOOL_CALLS_HELP = "agent: tool calls per session"
EVALS_HELP = "agent: evaluations per session"
TOKENS_HELP = "agent: tokens per session, prompt + completion over its requests"


def _agent(default: Any, **kw: Any) -> Any:
    """An option of the agent operator, listed in its own panel of --help."""
    return typer.Option(default, rich_help_panel="Agent (an LLM endpoint)", **kw)


def _scale(default: Any, *decls: str, **kw: Any) -> Any:
    return typer.Option(default, *decls, rich_help_panel="Scale-out", **kw)


_USER_ERRORS = (UsageError, RunDirError, RunLockedError, ConfigError, StoreError, RepoError)


def _fail(msg: str, code: int = 2) -> NoReturn:
    make_console(stderr=True).print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _open(run: str, runs_dir: Path, writable: bool = False) -> RunHandle:
    """Open a run; a read-only command (status/best/show) creates nothing in it."""
    try:
        return RunHandle.open(resolve_run(run, runs_dir), writable=writable)
    except _USER_ERRORS as e:
        _fail(str(e))


def start(
    target: str = typer.Option(..., "--target", "-t",
                               help="target: gqa, mha, decode or a target file (evolve targets)"),
    operator: str = typer.Option("auto", help="auto | offline | agent (auto = agent when an "
                                 "LLM endpoint is configured)"),
    seed: Optional[Path] = typer.Option(None, help="seed kernel file (default seeds/<target>.py)"),
    name: Optional[str] = typer.Option(None, help="run name (default <target>-<operator>-<time>)"),
    runs_dir: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help=RUNS_DIR_HELP),
    max_candidates: Optional[int] = typer.Option(
        None, help="stop when the run holds this many candidates (seed included)"),
    max_minutes: Optional[float] = typer.Option(None, help="stop after this many minutes"),
    suite: Optional[str] = typer.Option(None, help="benchmark suite (default: 'default' on a "
                                        "GPU, 'smoke' without one)"),
    rng_seed: Optional[int] = typer.Option(None, help="seed of the selection RNG (stored)"),
    model: str = _agent(AgentConfig.model, help="agent: model name"),
    base_url: Optional[str] = _agent(None, help="agent: OpenAI-compatible base URL"),
    max_usd: Optional[float] = _agent(None, help="agent: stop at this total cost"),
    prompts: Optional[Path] = _agent(None, help="agent: prompt directory override"),
    price_table: Optional[Path] = _agent(None, help="agent: price table file"),
    context_tokens: int = _agent(AgentConfig.context_tokens, help=CONTEXT_HELP),
    price: Optional[str] = _agent(None, help=PRICE_HELP),
    api: str = _agent("auto", help=API_HELP),
    reasoning_effort: Optional[str] = _agent(None, help=EFFORT_HELP),
    request_limit_min: float = _agent(AgentConfig.request_limit_min, help=LIMIT_HELP),
    max_wait_min: float = _agent(AgentConfig.max_wait_min, help=WAIT_HELP),
    max_tool_calls: int = _agent(AgentConfig.max_tool_calls, help=TOOL_CALLS_HELP),
    max_evaluations: int = _agent(AgentConfig.max_evaluations, help=EVALS_HELP),
    max_session_tokens: int = _agent(AgentConfig.max_tokens, help=TOKENS_HELP),
    proposers: int = _scale(1, help=PROPOSERS_HELP),
    gpus: Optional[str] = _scale(None, help=GPUS_HELP),
    executor: str = _scale("local", help=EXECUTOR_HELP),
    ray_address: Optional[str] = _scale(None, help=RAY_ADDRESS_HELP),
    overlap: bool = _scale(True, "--overlap/--no-overlap", help=OVERLAP_HELP),
) -> None:
    """Start a new evolution run (Ctrl-C stops it; `evolve resume` continues it)."""
    console = make_console()
    agent = AgentConfig(model=model, base_url=base_url, max_usd=max_usd,
                        prompts_dir=prompts.resolve() if prompts else None,
                        price_table=price_table.resolve() if price_table else None,
                        context_tokens=context_tokens,
                        price=price, api=api, reasoning_effort=reasoning_effort,
                        request_limit_min=request_limit_min, max_wait_min=max_wait_min,
                        max_tool_calls=max_tool_calls, max_evaluations=max_evaluations,
                        max_tokens=max_session_tokens)
    opts = StartOptions(target=target, operator=operator, seed=seed, name=name,
                        runs_dir=runs_dir, max_candidates=max_candidates,
                        max_minutes=max_minutes, suite=suite, rng_seed=rng_seed, agent=agent,
                        proposers=proposers, gpus=gpus, executor=executor,
                        ray_address=ray_address, overlap=overlap)
    try:
        run = create_run(opts)
        console.print(f"run {run.name}: {run.paths.root} (operator {run.config.operator}, "
                      f"suite {run.config.suite})", markup=False, highlight=False)
        code = drive(run, console, resumed=False)
    except _USER_ERRORS as e:
        _fail(str(e))
    raise typer.Exit(code)


def resume(
    run: str = typer.Argument(..., help="run name (under --runs-dir) or path"),
    runs_dir: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help=RUNS_DIR_HELP),
    max_candidates: Optional[int] = typer.Option(
        None, help="new candidate budget: total in the run, seed included"),
    max_minutes: Optional[float] = typer.Option(None, help="minutes for this session"),
    max_usd: Optional[float] = _agent(None, help="agent: new total cost cap"),
    context_tokens: Optional[int] = _agent(None, help=CONTEXT_HELP + "; overrides the "
                                                 "run's"),
    price: Optional[str] = _agent(None, help=PRICE_HELP),
    api: Optional[str] = _agent(None, help=API_HELP),
    reasoning_effort: Optional[str] = _agent(None, help=EFFORT_HELP),
    request_limit_min: Optional[float] = _agent(None, help=LIMIT_HELP),
    max_wait_min: Optional[float] = _agent(None, help=WAIT_HELP),
    max_tool_calls: Optional[int] = _agent(None, help=TOOL_CALLS_HELP),
    max_evaluations: Optional[int] = _agent(None, help=EVALS_HELP),
    max_session_tokens: Optional[int] = _agent(None, help=TOKENS_HELP),
    proposers: Optional[int] = _scale(None, help=PROPOSERS_HELP + "; overrides the run's"),
    gpus: Optional[str] = _scale(None, help=GPUS_HELP + "; overrides the run's"),
    executor: Optional[str] = _scale(None, help=EXECUTOR_HELP + "; overrides the run's"),
    ray_address: Optional[str] = _scale(None, help=RAY_ADDRESS_HELP),
    overlap: Optional[bool] = _scale(None, "--overlap/--no-overlap",
                                     help=OVERLAP_HELP + "; overrides the run's"),
) -> None:
    """Continue a stopped or killed run: cut-short evaluations are redone, nothing doubled."""
    console = make_console()
    handle = _open(run, runs_dir, writable=True)
    try:
        check_resume_host(handle)
        apply_resume_overrides(handle, max_candidates, max_minutes, max_usd, proposers=proposers,
                               gpus=gpus, executor=executor, ray_address=ray_address,
                               agent=dict(price=price, api=api,
                                          reasoning_effort=reasoning_effort,
                                          request_limit_min=request_limit_min,
                                          max_wait_min=max_wait_min,
                                          max_tool_calls=max_tool_calls,
                                          max_evaluations=max_evaluations,
                                          max_tokens=max_session_tokens,
                                          context_tokens=context_tokens),
                               overlap=overlap)
        code = drive(handle, console, resumed=True)
    except _USER_ERRORS as e:
        _fail(str(e))
    raise typer.Exit(code)


def status(
    run: Optional[str] = typer.Argument(None, help="run name or path (default: list runs)"),
    runs_dir: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """List runs, or summarise one (counts by status and failure class, best, elapsed)."""
    console = make_console()
    if run is None:
        handles = []
        for paths in list_runs(runs_dir):
            try:
                handles.append(RunHandle.open(paths, writable=False))
            except _USER_ERRORS as e:
                console.print(f"skipping {paths.root}: {e}", markup=False, highlight=False)
        if not handles:
            console.print(f"no runs under {runs_dir}", markup=False, highlight=False)
            return
        console.print(runs_table(handles))
        return
    handle = _open(run, runs_dir)
    console.print(run_summary(handle))
    workers = handle.store.workers()
    if workers:
        console.print(workers_table(workers))


def best(
    run: str = typer.Argument(..., help="run name or path"),
    runs_dir: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """Print the run's champion and its per-shape table."""
    console = make_console()
    handle = _open(run, runs_dir)
    champ = handle.store.best()
    if champ is None:
        _fail(f"run {handle.name} has no correct candidate yet", 1)
    console.print(candidate_panel(champ))
    console.print(shapes_table(champ.result.get("shapes") or []))


def show(
    run: str = typer.Argument(..., help="run name or path"),
    cid: int = typer.Argument(..., metavar="ID", help="candidate id"),
    runs_dir: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help=RUNS_DIR_HELP),
) -> None:
    """Print a candidate: source, diff against its parent, and its evaluation."""
    console = make_console()
    handle = _open(run, runs_dir)
    cand = handle.store.get_candidate(cid)
    if cand is None:
        _fail(f"run {handle.name} has no candidate {cid}")
    console.rule(f"source of #{cid}")
    console.print(source_view(handle.repo.source_at(cid)))
    if cand.parent_id is not None:
        console.rule(f"diff #{cand.parent_id} -> #{cid}")
        console.print(diff_view(handle.repo.diff(cand.parent_id, cid)))
    console.rule(f"evaluation of #{cid}")
    console.print(candidate_panel(cand))
    shapes = cand.result.get("shapes") or []
    if shapes:
        console.print(shapes_table(shapes, "per shape" + (" (quick pre-screen)" if cand.suite == "quick" else "")))
    if cand.result.get("compile_info"):
        console.print(compile_info_table(cand.result["compile_info"]))
    log_tail = cand.result.get("log_tail")
    if not cand.ok and log_tail:
        console.rule("worker log (tail)")
        console.print(log_tail, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("start")(start)
    app.command("resume")(resume)
    app.command("status")(status)
    app.command("best")(best)
    app.command("show")(show)

