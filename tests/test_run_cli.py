"""`evolve status / best / show` agree with the DB; bad input gives one line and exit 2."""

from __future__ import annotations

import pytest
from fixture_run import copy_run
from typer.testing import CliRunner

from evolve.cli import build_app
from evolve.read import short_shape
from evolve.run import RunHandle
from evolve.lock import RunLock

runner = CliRunner()
app = build_app()


def _invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "OPENAI_API_KEY": "",
                                               "OPENAI_BASE_URL": ""})


def test_status_lists_and_summarises(fixture_run):
    run = RunHandle.open(fixture_run)
    cands = run.store.candidates()
    best = run.store.best()
    res = _invoke("status", "--runs-dir", str(fixture_run.parent))
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if run.name in ln)
    assert "gqa" in line and "offline" in line and "stopped" in line
    assert f" {len(cands)} " in line and f"#{best.id}" in line and f"{best.score:.4g}" in line
    res = _invoke("status", run.name, "--runs-dir", str(fixture_run.parent))
    assert res.exit_code == 0, res.output
    n_ok = sum(c.ok for c in cands)
    assert f"{len(cands)} (ok {n_ok}" in res.output
    assert f"#{best.id} score {best.score:.4g}" in res.output


def test_best_prints_the_champion_and_its_shapes(fixture_run):
    run = RunHandle.open(fixture_run)
    best = run.store.best()
    res = _invoke("best", str(fixture_run))
    assert res.exit_code == 0, res.output
    assert f"candidate #{best.id}" in res.output and f"{best.score:.4g}" in res.output
    for sh in best.result["shapes"]:  # per-shape rows live in result_json; short names
        assert short_shape(sh) in res.output
        assert f"{sh['ms']:.4g}" in res.output


def test_read_only_commands_create_nothing_in_a_run(fixture_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(fixture_run, run_dir)
    shutil.rmtree(run_dir / "logs")
    shutil.rmtree(run_dir / "scratch", ignore_errors=True)
    def names() -> list[str]:  # SQLite's own -wal/-shm files aside
        return sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("lineage.db-"))

    before = names()
    for args in (("status", str(run_dir)), ("best", str(run_dir)), ("show", str(run_dir), "1")):
        res = _invoke(*args)
        assert res.exit_code == 0, res.output
    assert names() == before and not (run_dir / "logs").exists()


def test_show_prints_source_diff_and_evaluation(fixture_run):
    run = RunHandle.open(fixture_run)
    child = run.store.candidates()[-1]
    res = _invoke("show", str(fixture_run), str(child.id))
    assert res.exit_code == 0, res.output
    out = res.output
    assert "def attention(" in out
    assert f"diff #{child.parent_id} -> #{child.id}" in out
    assert run.repo.diff(child.parent_id, child.id).splitlines()[0] in out
    assert child.hypothesis.split(":")[0] in out and child.status in out
    for knob, ch in child.changes["knobs"].items():  # "<class>.<knob>" in a per-class CONFIG
        assert f'"{knob.split(".")[-1]}": {ch["to"]}' in out  # the changed CONFIG line
    seed = _invoke("show", str(fixture_run), "0")
    assert seed.exit_code == 0 and "diff #" not in seed.output


@pytest.mark.parametrize("args, needle", [
    (("status", "no-such-run"), "no run 'no-such-run'"),
    (("best", "no-such-run"), "no run"),
    (("show", "FIXTURE", "999"), "no candidate 999"),
    (("start", "--target", "nope"), "unknown target"),
    (("start", "--target", "gqa", "--operator", "bogus"), "unknown operator"),
    (("start", "--target", "gqa", "--seed", "/no/such/seed.py"), "not found"),
    (("start", "--target", "gqa", "--name", "bad name!"), "invalid run name"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, fixture_run, tmp_path):
    args = tuple(str(fixture_run) if a == "FIXTURE" else a for a in args)
    res = _invoke(*args, "--runs-dir", str(tmp_path))
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert "Traceback" not in res.output
    assert not any(tmp_path.iterdir()) or args[0] != "start"


def test_a_run_in_use_is_refused(fixture_run, tmp_path):
    copy = tmp_path / "inuse"
    copy_run(fixture_run, copy)
    with RunLock(copy / "run.lock"):  # this (live) process holds the run
        res = _invoke("resume", str(copy))
        assert res.exit_code == 2 and "in use" in res.output
        assert RunHandle.open(copy).effective_status() == "stopped"


def test_auto_operator_picks_agent_only_with_an_llm_endpoint(monkeypatch):
    from evolve.config import AgentConfig
    from evolve.driver import UsageError, resolve_operator

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert resolve_operator("auto", AgentConfig()) == "offline"
    assert resolve_operator("auto", AgentConfig(base_url="http://127.0.0.1:9/v1")) == "agent"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-stored")
    assert resolve_operator("auto", AgentConfig()) == "agent"
    assert resolve_operator("offline", AgentConfig()) == "offline"
    with pytest.raises(UsageError):
        resolve_operator("genetic", AgentConfig())
