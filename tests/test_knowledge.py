"""Knowledge base: front-matter parser, ranked search, read, run lessons, CLI."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from typer.testing import CliRunner

from evolve.knowledge import (Doc, FrontMatterError, Hit, KnowledgeError, load_doc,
                              parse_front_matter, read, search)
from evolve.knowledge_lessons import outcome_text, run_lessons

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge"


@pytest.fixture(autouse=True)
def _checkout_knowledge(monkeypatch):
    monkeypatch.delenv("EVOLVE_KNOWLEDGE_DIR", raising=False)


# ----------------------------------------------------------------------------- parser

def test_front_matter_subset():
    text = """---
# a comment
title: "Tiles: shapes and stages"
tags: [tma, "a, b", 'c']
applies_to: [gqa]
empty: []
sources:
  - https://example.org/x
  - "paper, section 3"
version: 2
---
# Body
text
"""
    meta, body = parse_front_matter(text, "t.md")
    assert meta == {"title": "Tiles: shapes and stages", "tags": ["tma", "a, b", "c"],
                    "applies_to": ["gqa"], "empty": [],
                    "sources": ["https://example.org/x", "paper, section 3"], "version": "2"}
    assert body == "# Body\ntext\n"


@pytest.mark.parametrize("text, message", [
    ("title: x\n", "no front matter"),
    ("---\ntitle: x\n", "not closed"),
    ("---\ntitle: x\n  nested: y\n---\n", "nested"),
    ("---\ntitle: x\ntitle: y\n---\n", "duplicate key"),
    ("---\n- orphan\n---\n", "without a key"),
    ("---\ntags: [a, b\n---\n", "close with ']'"),
    ("---\ntags: [a, , b]\n---\n", "empty item"),
    ("---\njust text\n---\n", "expected 'key: value'"),
    ("---\ntags:\n\t- a\n---\n", "tab"),
])
def test_front_matter_errors(text, message):
    with pytest.raises(FrontMatterError, match=message):
        parse_front_matter(text, "bad.md")


def test_load_doc_requires_sources(tmp_path: Path):
    p = tmp_path / "no-sources.md"
    p.write_text("---\ntitle: T\ntags: [a]\napplies_to: [gqa]\n---\nbody\n")
    with pytest.raises(FrontMatterError, match="sources"):
        load_doc(p)


# ----------------------------------------------------------------------------- search

@pytest.mark.parametrize("query, expected", [
    ("pack query heads GQA", "gqa-head-mapping-and-packing"),
    ("warp_specialize NaN num_stages Hopper", "fa3-warp-specialization-pingpong"),
    ("what happened when someone tried warp specialisation", "fa3-warp-specialization-pingpong"),
    ("fully masked row gives NaN", "numerics-pitfalls"),
    ("tensor descriptor alignment 16 bytes", "tensor-descriptors-tma"),
    ("persistent kernel heaviest tile first", "persistent-kernels-lpt"),
    ("emulate exp2 with a polynomial on FMA units", "exp2-emulation-fma"),
    ("lazy rescaling threshold", "conditional-rescaling-fa4"),
    ("int64 offsets overflow", "int64-offsets-and-overflow"),
    ("prune autotune configs", "autotune-and-config-search"),
    ("bf16 dot wrong in the interpreter", "triton-interpreter-limits"),
    ("causal mask skip fully masked tiles", "causal-split-and-tile-skipping"),
])
def test_search_ranks_the_right_document_first(query, expected):
    hits = search(query, k=3)
    assert hits and hits[0].id == expected, [(h.id, h.score) for h in hits]
    assert hits[0].kind == "doc" and hits[0].run is None


def test_hits_are_ranked_records():
    hits = search("online softmax running max rescale", k=4)
    assert len(hits) == 4 and all(isinstance(h, Hit) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].id == "fa2-online-softmax"
    assert hits[0].title.startswith("Online softmax")
    assert 0 < len(hits[0].snippet) <= 300 and "```" not in hits[0].snippet


def test_search_rejects_bad_input():
    with pytest.raises(KnowledgeError, match="no searchable words"):
        search("  the of ?! ")
    with pytest.raises(KnowledgeError, match="k must be"):
        search("gqa", k=0)


def test_read_document_and_suggestions():
    doc = read("gqa-head-mapping-and-packing")
    assert isinstance(doc, Doc) and doc.id == "gqa-head-mapping-and-packing"
    assert "gqa" in doc.applies_to and doc.sources and doc.path.is_file()
    assert read("knowledge/fa2-online-softmax.md").id == "fa2-online-softmax"
    with pytest.raises(KnowledgeError, match="did you mean: .*gqa-head-mapping-and-packing"):
        read("gqa-head-packing")


def _copy_kb(dst: Path) -> Path:
    shutil.copytree(KNOWLEDGE, dst)
    return dst


def test_a_new_document_is_found_at_once_and_home_is_not_written(tmp_path, monkeypatch):
    """The index lives in memory per query: an added document is searchable by a word of
    its body immediately, from a read-only copy, and nothing is written under HOME/XDG."""
    kb = _copy_kb(tmp_path / "kb")
    monkeypatch.setenv("EVOLVE_KNOWLEDGE_DIR", str(kb))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    assert not search("zebracorn", k=5)
    (kb / "zebra-notes.md").write_text(
        "---\ntitle: Striping\ntags: [misc]\napplies_to: [gqa]\n"
        "sources: [made up for a test]\n---\nStripes of the zebracorn kind.\n")
    for p in [kb, *kb.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert [h.id for h in search("zebracorn", k=5)] == ["zebra-notes"]
    finally:
        for p in [kb, *kb.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert not list(home.rglob("*"))


def _doc(kb: Path, name: str, body: str) -> None:
    (kb / f"{name}.md").write_text(f"---\ntitle: {name}\ntags: [t]\napplies_to: [gqa]\n"
                                   f"sources: [test]\n---\n{body}\n")


def _kb(tmp_path: Path, monkeypatch) -> Path:
    """A knowledge dir with three filler documents (bm25 needs a corpus to rank in)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for i in range(3):
        _doc(kb, f"filler{i}", f"Unrelated text about topic {i}.")
    monkeypatch.setenv("EVOLVE_KNOWLEDGE_DIR", str(kb))
    return kb


def test_snippets_cut_at_word_boundaries(tmp_path, monkeypatch):
    kb = _kb(tmp_path, monkeypatch)
    words = [f"word{i:03d}" for i in range(200)]
    _doc(kb, "long", " ".join(words[:120] + ["needle"] + words[120:]))
    snippet = search("needle", k=1)[0].snippet
    assert "needle" in snippet and snippet.startswith("...") and snippet.endswith("...")
    inner = snippet.removeprefix("...").removesuffix("...")
    assert all(w == "needle" or re.fullmatch(r"word\d{3}", w) for w in inner.split()), snippet
    assert len(snippet) <= 300


def test_table_snippet_is_its_header_and_best_row(tmp_path, monkeypatch):
    kb = _kb(tmp_path, monkeypatch)
    _doc(kb, "anchors", "Numbers.\n\n| head dim | backend | TFLOP/s |\n|---|---|---:|\n"
                        "| d64 | flash | 300 |\n| d128 | cudnn | 610 |\n| d64 | flex | 400 |\n")
    hit = search("cudnn TFLOP", k=1)[0]
    assert hit.snippet == "head dim: d128; backend: cudnn; TFLOP/s: 610"


def test_hits_without_evidence_are_not_shown(tmp_path, monkeypatch):
    """A term in every entry has ~0 idf: such hits (score 0) are left out, and what is
    shown always scores above zero."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for i in range(4):
        _doc(kb, f"d{i}", f"common words here, number {i}.")
    monkeypatch.setenv("EVOLVE_KNOWLEDGE_DIR", str(kb))
    assert search("common", k=10) == []
    hits = search("common number 2", k=10)
    assert hits and hits[0].id == "d2" and all(h.score > 0 for h in hits)
    assert all(h.score > 0 for h in search("online softmax running max", k=30))


# ----------------------------------------------------------------------------- lessons

def _make_run(runs: Path, name: str, rows: list[dict]) -> Path:
    """A lineage.db with the runs and candidates tables of docs/architecture.md."""
    run = runs / name
    run.mkdir(parents=True)
    db = sqlite_utils.Database(run / "lineage.db")
    db["candidates"].create({
        "id": int, "parent_id": int, "parent2_id": int, "operator": str, "commit_sha": str,
        "source_sha256": str, "status": str, "score": float, "failure_class": str,
        "failure_message": str, "hypothesis": str, "changes_json": str, "suite": str,
        "device": str, "eval_seconds": float, "variation_seconds": float, "tokens_in": int,
        "tokens_out": int, "cost_usd": float, "session_id": str, "depth": int,
        "created_at": str, "result_json": str}, pk="id")
    base = {"parent2_id": None, "commit_sha": "0" * 40, "source_sha256": "0" * 64,
            "suite": "smoke", "device": "interpreter", "eval_seconds": 1.0,
            "variation_seconds": 0.0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
            "session_id": None, "depth": 0, "created_at": "2026-11-26T00:00:00+00:00",
            "result_json": "{}", "failure_class": None, "failure_message": None,
            "changes_json": "{}", "score": None}
    db["candidates"].insert_all([{**base, **r} for r in rows])
    db["runs"].insert({"name": name, "status": "finished", "created_at": base["created_at"]})
    db.conn.close()
    return run


RUN_ROWS = [
    {"id": 0, "parent_id": None, "operator": "seed", "status": "ok", "score": 0.87,
     "hypothesis": "seed kernel (tutorial-style FA2)"},
    {"id": 1, "parent_id": 0, "operator": "agent", "status": "rejected",
     "failure_class": "nonfinite",
     "failure_message": "output has NaN on shape S=1000 D=128 causal",
     "hypothesis": "Enable warp specialization (tl.range warp_specialize=True) with num_stages=3",
     "changes_json": json.dumps({"knobs": {"num_stages": 3}, "recipes": ["warp_specialize"]})},
    {"id": 2, "parent_id": 0, "operator": "offline", "status": "ok", "score": 0.91,
     "hypothesis": "Use BLOCK_M=64 for short causal shapes",
     "changes_json": json.dumps({"knobs": {"BLOCK_M": {"from": 128, "to": 64}},
                                 "crossover_with": None})},
    {"id": 3, "parent_id": 2, "operator": "offline", "status": "ok", "score": 0.85,
     "hypothesis": "Raise num_stages to 4 for d64"},
]


def test_outcome_text():
    assert outcome_text("ok", 0.91, 0.87, None, None, 0) == \
        "ok, score 0.910 (+4.6% vs parent 0.870, gain)"
    assert outcome_text("ok", 0.85, 0.91, None, None, 2).endswith("(-6.6% vs parent 0.910, loss)")
    assert outcome_text("ok", 0.87, None, None, None, None) == "ok, score 0.870 (seed)"
    assert outcome_text("ok", 0.5, None, None, None, None, "interpreter", "smoke") == \
        "ok, score 0.500 (seed) [smoke suite, CPU interpreter timing, not GPU performance]"
    assert outcome_text("ok", 0.9, 0.9, None, None, 0, "cuda", "default").endswith(
        "(+0.0% vs parent 0.900, no change) [default suite, cuda]")
    assert outcome_text("rejected", None, 0.9, "mismatch", "max err 0.3\n at S=17", 0) == \
        "rejected: mismatch: max err 0.3 at S=17"


def test_run_lessons_are_searchable_and_lineage_db_is_untouched(tmp_path):
    run = _make_run(tmp_path / "runs", "r1", RUN_ROWS)
    db_file = run / "lineage.db"
    before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    hits = search("what happened when someone tried warp specialisation", k=5, run_dir=run)
    lessons = [h for h in hits if h.kind == "lesson"]
    assert lessons and lessons[0].id == "r1#1" and lessons[0].run == "r1"
    assert "warp specialization" in lessons[0].title
    assert "rejected: nonfinite" in lessons[0].snippet or "rejected: nonfinite" in \
        search("warp specialization", k=1, run_dir=run, kind="lesson")[0].snippet
    assert any(h.kind == "doc" for h in hits)  # documents and lessons share one ranking
    gain = search("BLOCK_M short causal", k=1, run_dir=run, kind="lesson")[0]
    # interpreter rows (these are): the parent's score, no percentage change
    assert gain.id == "r1#2" and "(parent 0.870)" in gain.snippet and "%" not in gain.snippet
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before
    assert sqlite_utils.Database(db_file).table_names() == ["candidates", "runs"]


def test_all_runs_flag_adds_earlier_runs(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    run1 = _make_run(runs, "r1", RUN_ROWS)
    _make_run(runs, "r0", [{"id": 0, "parent_id": None, "operator": "seed", "status": "ok",
                            "score": 0.8, "hypothesis": "seed"},
                           {"id": 1, "parent_id": 0, "operator": "agent", "status": "ok",
                            "score": 0.82, "hypothesis": "Try warp specialization at 2 stages"}])
    only = search("warp specialization", k=10, run_dir=run1, kind="lesson")
    assert {h.run for h in only} == {"r1"}
    both = search("warp specialization", k=10, run_dir=run1, all_runs=True, kind="lesson")
    assert {h.run for h in both} == {"r0", "r1"}
    monkeypatch.chdir(tmp_path)  # without --run: the runs under ./runs
    rooted = search("warp specialization", k=10, all_runs=True, kind="lesson")
    assert {h.id for h in rooted} == {h.id for h in both}


def test_run_dir_with_odd_characters(tmp_path):
    run = _make_run(tmp_path / "odd dir?", "run #2", RUN_ROWS[:2])
    hits = search("warp specialization", k=5, run_dir=run, kind="lesson")
    assert [h.id for h in hits] == ["run #2#1"]


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(KnowledgeError, match="no lineage.db"):
        search("gqa", run_dir=tmp_path / "nope")
    with pytest.raises(KnowledgeError, match="runs directory not found"):
        search("gqa", all_runs=True, run_dir=tmp_path / "nothing" / "r1")


# ----------------------------------------------------------------------------- CLI

def _cli():
    from evolve.cli import build_app
    return build_app()


def test_cli_search_show_and_errors(tmp_path):
    app, runner = _cli(), CliRunner()
    res = runner.invoke(app, ["knowledge", "search", "pack query heads GQA", "--json", "--k", "2"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    assert len(hits) == 2 and hits[0]["id"] == "gqa-head-mapping-and-packing"
    res = runner.invoke(app, ["knowledge", "search", "pack query heads GQA"])
    assert res.exit_code == 0 and "gqa-head-mapping-and-packing" in res.output
    res = runner.invoke(app, ["knowledge", "show", "fa2-online-softmax", "--raw"])
    assert res.exit_code == 0 and "Online softmax and the FlashAttention-2" in res.output
    assert "## Sources" in res.output
    res = runner.invoke(app, ["knowledge", "show", "gqa-packing"])
    assert res.exit_code == 2 and "did you mean" in res.output
    res = runner.invoke(app, ["knowledge", "search", "gqa", "--run", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no lineage.db" in res.output
    run = _make_run(tmp_path / "runs", "r1", RUN_ROWS)
    res = runner.invoke(app, ["knowledge", "search", "warp specialization", "--run", str(run), "--json"])
    assert res.exit_code == 0 and any(h["kind"] == "lesson" for h in json.loads(res.output))


def _start_registered() -> bool:
    import typer.main
    return "start" in typer.main.get_command(_cli()).commands


@pytest.mark.skipif(not _start_registered(), reason="`evolve start` is not registered yet")
def test_lessons_after_cpu_offline_run(fixture_run):
    """The session's shared CPU offline run (`evolve start --target gqa --operator offline
    --max-candidates 4`, tests/fixture_run.py): every candidate is a searchable lesson."""
    conn = sqlite3.connect(f"file:{fixture_run / 'lineage.db'}?mode=ro", uri=True)
    try:
        ids = [r[0] for r in conn.execute("select id from candidates order by id")]
    finally:
        conn.close()
    assert len(ids) >= 2
    run = fixture_run.name
    lessons = search("outcome score", k=500, run_dir=fixture_run, kind="lesson")
    assert sorted(h.id for h in lessons) == sorted(f"{run}#{i}" for i in ids)
    assert {h.run for h in lessons} == {run}
    # each lesson is found again by the words of its own hypothesis, and says its outcome
    for lesson in run_lessons(fixture_run):
        hypothesis, outcome = lesson.body.split("\nOutcome: ", 1)
        assert outcome.startswith(("ok", "rejected: "))
        if hypothesis.strip():
            top = search(hypothesis, k=len(ids), run_dir=fixture_run, kind="lesson")
            assert lesson.key in [h.id for h in top]


def test_interpreter_lessons_show_no_percentage_change():
    # what search_knowledge shows the agent: interpreter wall clock is no performance
    # number, so a lesson never turns it into a gain or a loss (issue 16)
    text = outcome_text("ok", 0.91, 0.87, None, None, 0, "interpreter", "smoke")
    assert "%" not in text and "gain" not in text and "loss" not in text
    assert text == ("ok, score 0.910 (parent 0.870) "
                    "[smoke suite, CPU interpreter timing, not GPU performance]")
