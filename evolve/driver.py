"""Starting and resuming runs: config resolution, the run lock, signals, final status."""

from __future__ import annotations

import os
import secrets
import signal
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from evaluator import UsageError  # bad user input: one line on stderr, exit code 2
from evolve.config import AgentConfig, RunConfig
from evolve.evaluation import Evaluations
from evolve.loop import Budget, EvolutionLoop
from evolve.operators import OperatorError, make_operator
from evolve.paths import default_seed
from evolve.display import ProgressState, make_progress
from evolve.records import Event
from evolve.run import RunHandle, default_name, validate_name
from evolve.lock import RunLock

NO_GPU_WARNING = ("warning: no CUDA GPU: candidates run in the Triton interpreter on the "
                  "'{suite}' suite; scores are CPU wall-clock ratios, NOT GPU performance")


@dataclass
class StartOptions:
    target: str
    operator: str = "auto"
    seed: Path | None = None
    name: str | None = None
    runs_dir: Path = Path("runs")
    max_candidates: int | None = None
    max_minutes: float | None = None
    suite: str | None = None
    rng_seed: int | None = None
    agent: AgentConfig | None = None
    proposers: int = 1
    gpus: str | None = None  # "0,1" | "all" | None (all visible)
    executor: str = "local"
    ray_address: str | None = None
    overlap: bool = True


def resolve_operator(requested: str, agent: AgentConfig) -> str:
    if requested not in ("auto", "offline", "agent"):
        raise UsageError(f"unknown operator {requested!r} (auto, offline or agent)")
    if requested != "auto":
        return requested
    llm = os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL") or agent.base_url
    return "agent" if llm else "offline"


EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def check_agent(agent: AgentConfig) -> None:
    """Validate the agent's endpoint settings; an unpriced model with --max-usd is refused."""
    from evolve.agent.client import APIS
    from evolve.agent.pricing import PriceTableError, require_price

    if agent.api not in APIS:
        raise UsageError(f"unknown --api {agent.api!r} (auto, chat or responses)")
    if agent.reasoning_effort is not None and agent.reasoning_effort not in EFFORTS:
        raise UsageError(f"unknown --reasoning-effort {agent.reasoning_effort!r} "
                         f"({', '.join(EFFORTS)})")
    for flag, value in (("--request-limit-min", agent.request_limit_min),
                        ("--max-wait-min", agent.max_wait_min),
                        ("--max-tool-calls", agent.max_tool_calls),
                        ("--max-evaluations", agent.max_evaluations),
                        ("--max-session-tokens", agent.max_tokens)):
        if value <= 0:
            raise UsageError(f"{flag} must be positive")
    try:
        require_price(agent.model, agent.price_table, agent.price, agent.max_usd)
    except PriceTableError as e:
        raise UsageError(str(e)) from None


def check_scaleout(executor: str | None, ray_address: str | None, gpus: str | None,
                   proposers: int | None) -> tuple[str | None, list[int] | None, int | None]:
    """Validate --executor / --ray-address / --gpus / --proposers (None: not given).
    Returns (executor, gpu indices or None for all visible, proposers)."""
    from evolve.executors import ExecutorError, check_executor, parse_gpus, resolve_gpus

    if proposers is not None and proposers < 1:
        raise UsageError("--proposers must be at least 1")
    try:
        if executor is not None:
            check_executor(executor)
        if ray_address and executor not in (None, "ray"):
            raise ExecutorError("--ray-address needs --executor ray")
        parsed = parse_gpus(gpus) if gpus is not None else None
        if parsed is not None and not (executor == "ray" and ray_address):
            resolve_gpus(parsed)  # each index must be visible here (a cluster counts its own)
    except ExecutorError as e:
        raise UsageError(str(e)) from None
    return executor, parsed, proposers


def resolve_target(target: str) -> tuple[Any, str]:
    """The loaded target and how the run stores it: a built-in's name, or the absolute
    path of a target file (so resume and every evaluation find it again)."""
    from evaluator import TargetError, UnknownTarget, get_target

    try:
        tgt = get_target(target)
    except (UnknownTarget, TargetError) as e:
        raise UsageError(str(e)) from None
    return tgt, str(tgt.spec["path"]) if tgt.spec.get("path") else tgt.name


def target_seed(tgt: Any, target_ref: str) -> Path:
    """The default seed: seeds/<name>.py of a built-in; a target file's ``SEED`` (a path
    relative to the file)."""
    if not tgt.spec.get("path"):
        return default_seed(target_ref)
    rel = getattr(tgt.module, "SEED", None)
    if not isinstance(rel, str):
        raise UsageError(f"target file {target_ref} names no SEED; pass --seed FILE")
    return Path(target_ref).parent / rel


def create_run(opts: StartOptions) -> RunHandle:
    from evaluator import gpu_available
    from evolve.fingerprint import collect

    tgt, target_ref = resolve_target(opts.target)
    agent = opts.agent or AgentConfig()
    check_context_tokens(agent.context_tokens)
    operator = resolve_operator(opts.operator, agent)
    if operator == "agent":
        check_agent(agent)
    seed = Path(opts.seed) if opts.seed else target_seed(tgt, target_ref)
    if not seed.is_file():
        raise UsageError(f"seed file {seed} not found")
    if opts.max_candidates is not None and opts.max_candidates < 1:
        raise UsageError("--max-candidates must be at least 1")
    executor, gpus, proposers = check_scaleout(opts.executor, opts.ray_address, opts.gpus,
                                               opts.proposers)
    gpu = gpu_available()
    suite = opts.suite or ("default" if gpu else "smoke")
    name = validate_name(opts.name) if opts.name else default_name(tgt.name, operator)
    config = RunConfig(name=name, target=target_ref, operator=operator,
                       seed_file=str(seed.resolve()), suite=suite,
                       rng_seed=opts.rng_seed if opts.rng_seed is not None
                       else secrets.randbelow(2**31),
                       max_candidates=opts.max_candidates, max_minutes=opts.max_minutes,
                       gpu=gpu, agent=agent, executor=executor or "local",
                       ray_address=opts.ray_address, gpus=gpus, proposers=proposers or 1,
                       overlap=opts.overlap,
                       baselines=["cudnn"] if "cudnn" in tgt.baselines else list(tgt.baselines))
    if (Path(opts.runs_dir) / name).exists():
        raise UsageError(f"run {name!r} already exists in {opts.runs_dir}; pick another --name "
                         "or use evolve resume")
    return RunHandle.create(opts.runs_dir, config, collect(gpu))


def drive(run: RunHandle, console: Console, resumed: bool,
          live: bool | None = None) -> int:
    """Run the loop under the run lock; always leaves a consistent run and a final status."""
    lock = RunLock(run.paths.lock)
    lock.acquire()
    prev_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    # A script's `evolve start ... &` inherits SIGINT ignored (non-interactive bash does
    # that to background jobs) and Python then keeps ignoring it: `kill -INT` must still stop.
    prev_int = signal.getsignal(signal.SIGINT)
    if prev_int == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = run.config
    store = run.store

    def say(text: str, style: str | None = None) -> None:
        console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    try:
        if resumed:
            found = store.run().status
            if found == "running":  # no live loop holds it (we hold the lock): it died
                store.set_run_status("interrupted")
                store.add_event(Event(kind="warning", message="run was found dead (interrupted)"))
        store.set_run_status("running")
        store.add_event(Event(kind="resume" if resumed else "start",
                              message=f"pid {os.getpid()}, operator {cfg.operator}, "
                              f"budget: {_budget_text(cfg)}, {_scale_text(cfg)}"))
        if not cfg.gpu:
            say(NO_GPU_WARNING.format(suite=cfg.suite), style="yellow")
        try:
            operator = make_operator(cfg.operator, run)
        except (OperatorError, ImportError) as e:
            store.set_run_status("stopped")
            raise UsageError(f"cannot use the {cfg.operator} operator: {e}") from None
        run.paths.clear_scratch()  # before the executor: its workers pre-start in scratch/
        evaluations = _evaluations(run)
        budget = Budget(cfg.max_candidates, cfg.max_minutes, cfg.agent.max_usd)
        state = ProgressState(run.name, cfg.target, cfg.operator, cfg.max_candidates)
        progress = make_progress(state, console, live)
        try:
            with progress:
                outcome = EvolutionLoop(
                    run, operator, progress, budget, evaluations,
                    operator_factory=lambda view: make_operator(cfg.operator, view),
                    proposers=cfg.proposers).run_loop()
        except KeyboardInterrupt:
            store.set_run_status("stopped")
            store.add_event(Event(kind="stop", message="interrupted by the user (Ctrl-C)"))
            say(f"stopped by Ctrl-C. Resume with: evolve resume {run.paths.root}")
            return 130
        except Exception as e:
            store.set_run_status("stopped")
            run.event("stop", f"error: {type(e).__name__}: {e}"[:500], None,
                      {"traceback": traceback.format_exc()[-4000:]})
            say(f"error: {type(e).__name__}: {e}", style="red")
            say(f"the run is consistent; resume with: evolve resume {run.paths.root}")
            return 1
        store.set_run_status(outcome.status)
        store.add_event(Event(kind="stop", message=outcome.reason))
        best = store.best()
        if outcome.failed:  # what to fix, on a line of its own
            say(f"error: {outcome.reason}", style="red")
        say(("run failed" if outcome.failed else outcome.reason)
            + f". {store.counts()['total']} candidates; best "
            + (f"#{best.id} " + ("no score" if best.score is None else f"score {best.score:.4g}")
               if best else "none")
            + f". Run directory: {run.paths.root}")
        if outcome.status == "stopped":
            say(f"continue with: evolve resume {run.paths.root} --max-candidates N")
        return 1 if outcome.failed else 0
    finally:
        signal.signal(signal.SIGTERM, prev_term)
        if prev_int == signal.SIG_IGN:
            signal.signal(signal.SIGINT, prev_int)
        lock.release()


def _evaluations(run: RunHandle) -> Evaluations:
    """The run's evaluations on a started executor (its workers, one per GPU)."""
    from evolve.executors import ExecutorError, executor_for

    cfg = run.config
    try:
        ex = executor_for(cfg, run.paths.scratch, run.paths.logs)
    except ExecutorError as e:
        run.store.set_run_status("stopped")
        raise UsageError(f"cannot start the {cfg.executor} executor: {e}") from None
    return Evaluations(run, ex)


def _budget_text(cfg: RunConfig) -> str:
    parts = []
    if cfg.max_candidates is not None:
        parts.append(f"{cfg.max_candidates} candidates")
    if cfg.max_minutes is not None:
        parts.append(f"{cfg.max_minutes:g} min")
    if cfg.agent.max_usd is not None:
        parts.append(f"${cfg.agent.max_usd:g}")
    return ", ".join(parts) or "none (Ctrl-C stops)"


def _scale_text(cfg: RunConfig) -> str:
    gpus = "all GPUs" if cfg.gpus is None else "GPUs " + ",".join(map(str, cfg.gpus))
    if not cfg.gpu:
        gpus = "one interpreter worker"
    where = f" at {cfg.ray_address}" if cfg.ray_address else ""
    return f"{cfg.proposers} proposer(s), {cfg.executor} executor{where} on {gpus}"


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def check_resume_host(run: RunHandle) -> None:
    """Refuse to mix scores from different hardware in one run."""
    from evaluator import gpu_available

    gpu = gpu_available()
    if gpu != run.config.gpu:
        made = "with a GPU" if run.config.gpu else "without a GPU (interpreter)"
        raise UsageError(f"run {run.name} was made {made}; its scores are not comparable with "
                         "this machine's: start a new run here")
    if gpu:
        from evolve.fingerprint import collect

        now, then = collect(gpu).get("gpu"), run.fingerprint.get("gpu")
        if then and now != then:
            raise UsageError(f"run {run.name} was measured on {then}, this machine has {now}: "
                             "start a new run here")


MIN_CONTEXT_TOKENS = 8000  # the system prompt and brief alone take a few thousand


def check_context_tokens(n: int | None) -> None:
    if n is not None and n < MIN_CONTEXT_TOKENS:
        raise UsageError(f"--context-tokens must be at least {MIN_CONTEXT_TOKENS} "
                         "(the prompt and brief need a few thousand)")


def apply_resume_overrides(run: RunHandle, max_candidates: int | None,
                           max_minutes: float | None, max_usd: float | None,
                           proposers: int | None = None, gpus: str | None = None,
                           executor: str | None = None, ray_address: str | None = None,
                           agent: dict[str, Any] | None = None,
                           overlap: bool | None = None) -> None:
    """Apply `resume` flags (None: keep the run's value); `agent` holds AgentConfig fields."""
    if max_candidates is not None:
        if max_candidates < 1:
            raise UsageError("--max-candidates must be at least 1")
        run.config.max_candidates = max_candidates
    if max_minutes is not None:
        run.config.max_minutes = max_minutes
    if max_usd is not None:
        run.config.agent.max_usd = max_usd
    given = {k: v for k, v in (agent or {}).items() if v is not None}
    check_context_tokens(given.get("context_tokens"))
    if given:
        run.config.agent = replace(run.config.agent, **given)
    if run.config.operator == "agent":
        check_agent(run.config.agent)
    executor, parsed, proposers = check_scaleout(
        executor or (run.config.executor if ray_address else None), ray_address, gpus, proposers)
    if executor is not None:
        run.config.executor = executor
        if executor != "ray":
            run.config.ray_address = None
    if ray_address is not None:
        run.config.ray_address = ray_address
    if gpus is not None:
        run.config.gpus = parsed
    if proposers is not None:
        run.config.proposers = proposers
    if overlap is not None:
        run.config.overlap = overlap
    run.save_config()

