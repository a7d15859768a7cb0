"""Every knowledge document parses, carries its front matter and sources, and its
Triton snippets at least compile (runnable ones run in the interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evolve.knowledge_docs import load_doc, load_docs, python_snippets

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"

REQUIRED_TOPICS = [
    "fa2-online-softmax", "exp2-scale-folding", "causal-split-and-tile-skipping",
    "tiles-warps-stages-by-head-dim", "tensor-descriptors-tma", "tl-range-pipelining",
    "l2-grid-order", "gqa-head-mapping-and-packing", "persistent-kernels-lpt",
    "conditional-rescaling-fa4", "exp2-emulation-fma", "fa3-warp-specialization-pingpong",
    "register-pressure-maxnreg", "fp8-notes", "numerics-pitfalls", "triton-interpreter-limits",
    "measured-anchors-h100", "autotune-and-config-search", "gqa-default-suite-and-scoring",
    "int64-offsets-and-overflow", "subtiling-softmax-mma-overlap", "sdpa-backends-and-baselines",
]
# documents that are tables/rules rather than a technique with a Triton sketch
NO_SKETCH_NEEDED = {"measured-anchors-h100", "evaluator-rules"}

DOC_PATHS = sorted(p for p in KNOWLEDGE.glob("*.md") if p.name.lower() != "readme.md")
SNIPPETS = [s for p in DOC_PATHS for s in python_snippets(load_doc(p))]
RUNNABLE = [s for s in SNIPPETS if s.runnable]


def test_enough_documents_and_required_topics():
    docs = load_docs(KNOWLEDGE)
    assert len(docs) >= 20
    ids = {d.id for d in docs}
    missing = [t for t in REQUIRED_TOPICS if t not in ids]
    assert not missing, f"missing topics: {missing}"


@pytest.mark.parametrize("path", DOC_PATHS, ids=lambda p: p.stem)
def test_document_front_matter(path: Path):
    doc = load_doc(path)  # raises FrontMatterError on a malformed block
    assert doc.title.strip() and len(doc.title) < 120
    assert doc.tags and all(t.strip() for t in doc.tags)
    assert doc.applies_to and all(a.strip() for a in doc.applies_to)
    assert doc.sources and all(len(s) > 8 for s in doc.sources)
    assert len(doc.body) > 800, "a document should say something concrete"
    if doc.id not in NO_SKETCH_NEEDED:
        assert python_snippets(doc), f"{doc.id} has no Triton/Python sketch"


def test_runnable_snippet_budget():
    # runnable snippets cost CI time: keep them few
    assert 6 <= len(RUNNABLE) <= 10, [f"{s.doc_id}#{s.index}" for s in RUNNABLE]


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if not s.runnable],
                         ids=lambda s: f"{s.doc_id}#{s.index}")
def test_illustrative_snippet_compiles(snippet):
    compile(snippet.code, f"{snippet.doc_id}.md:{snippet.line}", "exec")


@pytest.mark.parametrize("snippet", RUNNABLE, ids=lambda s: f"{s.doc_id}#{s.index}")
def test_runnable_snippet_runs_in_interpreter(snippet, tmp_path: Path):
    assert "@triton.jit" in snippet.code and "assert" in snippet.code
    script = tmp_path / f"{snippet.doc_id.replace('-', '_')}_{snippet.index}.py"
    script.write_text(snippet.code)  # @triton.jit needs a real file
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (
        f"{snippet.doc_id}.md line {snippet.line} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
