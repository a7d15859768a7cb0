"""Every knowledge document parses, is found by its own words, and its Python blocks at
least compile (```python runnable blocks run in the Triton interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from evolve.knowledge import load_doc, search

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"
DOC_PATHS = sorted(p for p in KNOWLEDGE.glob("*.md") if p.name.lower() != "readme.md")


@dataclass(frozen=True)
class Block:
    """One fenced python block of a document."""
    doc_id: str
    index: int  # 0-based among the document's python blocks
    line: int  # 1-based line of the opening fence in the file
    runnable: bool
    code: str


def python_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    for m in re.finditer(r"^```(python|py)([^\n]*)\n(.*?)^```\s*$", path.read_text(encoding="utf-8"),
                         flags=re.M | re.S):
        line = path.read_text(encoding="utf-8")[: m.start()].count("\n") + 1
        blocks.append(Block(path.stem, len(blocks), line, "runnable" in m.group(2).split(),
                            m.group(3)))
    return blocks


BLOCKS = [b for p in DOC_PATHS for b in python_blocks(p)]


@pytest.mark.parametrize("path", DOC_PATHS, ids=lambda p: p.stem)
def test_document_parses_and_is_found_by_its_title(path: Path):
    doc = load_doc(path)  # raises FrontMatterError on a malformed block
    assert doc.title.strip() and doc.tags and doc.applies_to and doc.sources and doc.body.strip()
    hits = search(doc.title, k=3, kind="doc")
    assert doc.id in [h.id for h in hits], [(h.id, h.score) for h in hits]


def test_python_blocks_are_found():
    assert any(b.runnable for b in BLOCKS) and any(not b.runnable for b in BLOCKS)
    assert all(not b.code.lstrip().startswith("```") for b in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.runnable],
                         ids=lambda b: f"{b.doc_id}#{b.index}")
def test_illustrative_block_compiles(block):
    compile(block.code, f"{block.doc_id}.md:{block.line}", "exec")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.runnable],
                         ids=lambda b: f"{b.doc_id}#{b.index}")
def test_runnable_block_runs_in_interpreter(block, tmp_path: Path):
    script = tmp_path / f"{block.doc_id.replace('-', '_')}_{block.index}.py"
    script.write_text(block.code)  # @triton.jit needs a real file
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (
        f"{block.doc_id}.md line {block.line} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
