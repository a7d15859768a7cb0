"""The knowledge base the agent consults: the markdown documents under knowledge/, and
ranked full-text search over them and over the lessons of runs (evolve.knowledge_lessons).

    from evolve.knowledge import search, read, list_docs, Hit, Doc, KnowledgeError
    hits = search("pack query heads GQA", k=5, run_dir=Path("runs/r1"))
    doc = read("gqa-head-mapping-and-packing")

A document opens with a front-matter block between two `---` lines. PyYAML is not a
dependency, so the block is parsed here; the accepted subset is small on purpose:
`key: scalar`, `key: [a, "b, c"]`, `key:` followed by `- item` lines, `#` comments.
Anything else is a `FrontMatterError` naming the file and line.

Search: one in-memory SQLite FTS5 table per query (sqlite-utils; porter tokenizer, bm25
with the title and tags weighted above the body) holding the documents and the lessons,
so both share one ranking. A search over the 23 documents here took ~40 ms (index
built, queried, dropped; measured on the 2-core development machine).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from evolve.paths import KNOWLEDGE_DIR
from evolve.read import find_run_dirs
from evolve.run import RunPaths

REQUIRED_KEYS = ("title", "tags", "applies_to", "sources")
# bm25 column weights for (title, tags, body): a term in the title or the tags says
# more about what a document is about than the same term deep in its body.
WEIGHTS = (6.0, 4.0, 1.0)
HEADING_BONUS = 1.0
MIN_SCORE = 0.01  # below this a hit only shares words found in most entries: not shown
SNIPPET_CHARS = 280

_STOPWORDS = frozenset("""
a an and are as at be by can did do does for from had has have how i if in into is it
its me my of on or our so some someone something that the their them then there these
this to tried try tries trying was we were what when where which who why will with
would you your about after before than happen happened happens went go goes
does did done tell show know use used using any anyone anything
""".split())
_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*:(.*)$")


class KnowledgeError(Exception):
    """Bad use of the knowledge base (unknown document, unreadable run, bad query)."""


class FrontMatterError(KnowledgeError):
    """A knowledge document's front matter is missing or outside the accepted subset."""


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    tags: list[str]
    applies_to: list[str]
    sources: list[str]
    body: str
    path: Path


@dataclass(frozen=True)
class Entry:
    """One searchable record: a document or a run's lesson."""
    kind: str  # "doc" | "lesson"
    key: str
    title: str
    tags: str
    body: str
    run: str | None = None


@dataclass(frozen=True)
class Hit:
    kind: str  # "doc" | "lesson"
    id: str
    title: str
    snippet: str
    score: float
    run: str | None = None


# ----------------------------------------------------------------------------- documents

def knowledge_dir() -> Path:
    """knowledge/ of this checkout, or $EVOLVE_KNOWLEDGE_DIR when set."""
    return Path(os.environ.get("EVOLVE_KNOWLEDGE_DIR") or KNOWLEDGE_DIR)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _flow_list(inner: str, where: str) -> list[str]:
    """The items of `[a, "b, c", d]`: commas inside quotes do not split."""
    parts, buf, quote = [], "", None
    for ch in inner:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            parts.append(buf)
            buf = ""
            continue
        buf += ch
    if quote:
        raise FrontMatterError(f"{where}: unterminated quote in list")
    items = [_unquote(x) for x in parts + [buf]]
    if items != [""] and "" in items:
        raise FrontMatterError(f"{where}: empty item in list")
    return [] if items == [""] else items


def parse_front_matter(text: str, name: str = "<text>") -> tuple[dict[str, object], str]:
    """Split `text` into (front matter dict, body). Raises FrontMatterError."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise FrontMatterError(f"{name}: no front matter (first line must be '---')")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise FrontMatterError(f"{name}: front matter is not closed by a '---' line")
    meta: dict[str, object] = {}
    open_list: list[str] | None = None  # the list that "- item" lines extend
    for no in range(1, end):
        raw, where = lines[no], f"{name}:{no + 1}"
        stripped = raw.strip()
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise FrontMatterError(f"{where}: tab indentation is not supported")
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("- "):
            if open_list is None:
                raise FrontMatterError(f"{where}: list item without a key above it")
            if not _unquote(stripped[2:]):
                raise FrontMatterError(f"{where}: empty list item")
            open_list.append(_unquote(stripped[2:]))
            continue
        if raw[0].isspace():
            raise FrontMatterError(f"{where}: nested or indented values are not supported")
        match = _KEY_RE.match(stripped)
        if not match:
            raise FrontMatterError(f"{where}: expected 'key: value', got {stripped!r}")
        key, value = match.group(1), match.group(2).strip()
        if key in meta:
            raise FrontMatterError(f"{where}: duplicate key {key!r}")
        open_list = None
        if not value:
            meta[key] = open_list = []
        elif value.startswith("["):
            if not value.endswith("]"):
                raise FrontMatterError(f"{where}: list for {key!r} must close with ']' on the same line")
            meta[key] = _flow_list(value[1:-1], where)
        else:
            meta[key] = _unquote(value)
    return meta, "\n".join(lines[end + 1:]).strip("\n") + "\n"


def load_doc(path: Path) -> Doc:
    meta, body = parse_front_matter(path.read_text(encoding="utf-8"), path.name)
    missing = [k for k in REQUIRED_KEYS if not meta.get(k)]
    if missing:
        raise FrontMatterError(f"{path.name}: front matter lacks {', '.join(missing)}")
    if not isinstance(meta["title"], str):
        raise FrontMatterError(f"{path.name}: title must be a single line of text")
    as_list = lambda key: [meta[key]] if isinstance(meta[key], str) else list(meta[key])  # noqa: E731
    return Doc(id=path.stem, title=meta["title"], tags=as_list("tags"),
               applies_to=as_list("applies_to"), sources=as_list("sources"), body=body,
               path=path)


def list_docs() -> list[Doc]:
    kdir = knowledge_dir()
    if not kdir.is_dir():
        raise KnowledgeError(f"knowledge directory not found: {kdir}")
    return [load_doc(p) for p in sorted(kdir.glob("*.md")) if p.name.lower() != "readme.md"]


def read(doc_id: str) -> Doc:
    """One document by id (its file stem); unknown ids suggest close matches."""
    docs = {d.id: d for d in list_docs()}
    key = doc_id.strip().removesuffix(".md").rsplit("/", 1)[-1]
    if key in docs:
        return docs[key]
    close = difflib.get_close_matches(key, list(docs), n=3, cutoff=0.55)
    close += [d for d in docs if key and key.lower() in d and d not in close][:3]
    hint = f"; did you mean: {', '.join(close[:4])}?" if close else "; see `evolve knowledge list`"
    raise KnowledgeError(f"unknown knowledge document {doc_id!r}{hint}")


# ----------------------------------------------------------------------------- search

def _normalise(text: str) -> str:
    """Fold British -isation/-ise spellings onto -ization/-ize (applied to the indexed
    text and to queries alike, so 'specialisation' finds 'specialization')."""
    text = re.sub(r"isation", "ization", text, flags=re.IGNORECASE)
    return re.sub(r"(\w{3,})is(e|ed|es|ing)\b", r"\1iz\2", text, flags=re.IGNORECASE)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", _normalise(text).lower())


def _terms(query: str) -> list[str]:
    terms = list(dict.fromkeys(w for w in _words(query) if w not in _STOPWORDS))
    if not terms:
        raise KnowledgeError(f"query {query!r} has no searchable words")
    return terms


def _stem(term: str) -> str:
    return term[:5] if len(term) > 5 else term


def _matches(text: str, stems: list[str]) -> int:
    """How many of the stems start a word of `text` ('packing' finds 'pack')."""
    words = _words(text)
    return sum(1 for s in stems if any(w.startswith(s) for w in words))


def _table_text(block: str, stems: list[str]) -> str:
    """A markdown table as its header and its best-matching row, `header: cell; ...`."""
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in block.splitlines() if ln.strip().startswith("|")
            and not re.fullmatch(r"[\s|:-]+", ln)]
    if len(rows) < 2:
        return " ".join(" ".join(r) for r in rows)
    header, best = rows[0], max(rows[1:], key=lambda r: _matches(" ".join(r), stems))
    return "; ".join(f"{h}: {c}" if h else c for h, c in zip(header, best))


def _trim(text: str, stems: list[str]) -> str:
    """At most SNIPPET_CHARS of `text` around its first match, cut at word boundaries."""
    if len(text) <= SNIPPET_CHARS:
        return text
    low = _normalise(text).lower()
    first = min((i for i in (low.find(s) for s in stems) if i >= 0), default=0)
    start = 0 if first < 60 else text.rfind(" ", 0, first - 40) + 1
    end = text.rfind(" ", start, start + SNIPPET_CHARS)
    end = end if end > start else start + SNIPPET_CHARS
    return ("..." if start else "") + text[start:end].rstrip(" ,;:") + "..."


def _snippet(body: str, terms: list[str]) -> str:
    """The paragraph of `body` that mentions the most query terms (tables shown as their
    best row, code blocks skipped), trimmed around its first match at word boundaries."""
    stems = [_stem(t) for t in terms]
    best, best_score = "", -1.0
    prose = re.sub(r"```.*?```", "\n\n", body, flags=re.S)  # code blocks make poor snippets
    for para in re.split(r"\n\s*\n", prose):
        if not para.strip():
            continue
        is_table = para.lstrip().startswith("|")
        text = _table_text(para, stems) if is_table else " ".join(para.split())
        score = _matches(text, stems) - (0.5 if para.lstrip().startswith("#") else 0)
        if score > best_score:
            best, best_score = text, score
    return _trim(best, stems)


def _ranked(entries: list[Entry], terms: list[str]) -> list[tuple[float, Entry]]:
    """bm25 (title and tags weighted up) plus a small bonus for the share of query terms
    in the title or tags: on a corpus this small, terms found in more than half of the
    entries get an idf of ~0 from FTS5's bm25, so the bonus orders such queries."""
    db = sqlite_utils.Database(memory=True)
    table = db["entries"]
    table.insert_all(({"n": i, "title": _normalise(f"{e.title} {e.key.replace('-', ' ')}"),
                       "tags": _normalise(e.tags), "body": _normalise(e.body)}
                      for i, e in enumerate(entries)), pk="n")
    table.enable_fts(["title", "tags", "body"], tokenize="porter")
    fts = table.detect_fts()
    db.execute(f"insert into [{fts}]([{fts}], rank) values ('rank', 'bm25({', '.join(map(str, WEIGHTS))})')")
    query = " OR ".join(f'"{t}"' for t in terms)
    stems = [_stem(t) for t in terms]
    scored = []
    for r in table.search(query, include_rank=True, columns=["n", "title", "tags"]):
        bonus = HEADING_BONUS * _matches(f"{r['title']} {r['tags']}", stems) / len(terms)
        scored.append((round(-float(r["rank"]) + bonus, 4), entries[r["n"]]))
    db.conn.close()
    return sorted(scored, key=lambda item: -item[0])


def search(query: str, k: int = 5, *, run_dir: Path | None = None, all_runs: bool = False,
           kind: str | None = None) -> list[Hit]:
    """Ranked search over the documents and, when a run is named, its lessons.

    run_dir: lessons of that run's lineage.db. all_runs: lessons of every run next to
    run_dir (else under ./runs). kind: "doc" or "lesson" keeps only that kind of hit.
    Hits scoring below MIN_SCORE are left out.
    """
    from evolve.knowledge_lessons import run_lessons

    if k < 1:
        raise KnowledgeError(f"k must be at least 1, got {k}")
    if kind not in (None, "doc", "lesson"):
        raise KnowledgeError(f"kind must be 'doc' or 'lesson', got {kind!r}")
    terms = _terms(query)
    run_dirs = [Path(run_dir)] if run_dir is not None else []
    if all_runs:
        root = Path(run_dir).parent if run_dir else Path("runs")
        if not root.is_dir():
            raise KnowledgeError(f"runs directory not found: {root}")
        run_dirs += [d for d in find_run_dirs(root) if RunPaths(d).db.is_file()
                     and not any(d.resolve() == r.resolve() for r in run_dirs)]
    entries = [Entry("doc", d.id, d.title, " ".join(d.tags + d.applies_to), d.body) for d in list_docs()]
    for d in run_dirs:
        entries += run_lessons(d)
    hits = [Hit(e.kind, e.key, e.title, _snippet(e.body, terms), score, e.run)
            for score, e in _ranked(entries, terms)
            if score >= MIN_SCORE and kind in (None, e.kind)]
    return hits[:k]
