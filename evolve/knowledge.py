"""The knowledge base the agent consults: ranked full-text search over knowledge/*.md
and over the lessons learned by runs (one per evaluated candidate).

    from evolve.knowledge import search, read, Hit, Doc, KnowledgeError
    hits = search("pack query heads GQA", k=5, run_dir=Path("runs/r1"))
    doc = read("gqa-head-mapping-and-packing")

Index: SQLite FTS5 through sqlite-utils (porter tokenizer, bm25 ranking with the
title and tags weighted above the body). The documents' index is cached in
`$XDG_CACHE_HOME/evolve/knowledge-<fingerprint>.db`; the fingerprint hashes every
document's name and content, so any edit selects a new file (built in a temporary
file and renamed into place: safe with concurrent processes; falls back to memory
when the cache directory is not writable, e.g. a read-only home). Lessons are read
read-only from each run's lineage.db and indexed together with the documents in an
in-memory database per query, so documents and lessons share one bm25 ranking.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from evolve.knowledge_docs import Doc, KnowledgeError, doc_paths, load_docs
from evolve.knowledge_lessons import Lesson, readonly_uri, run_lessons, runs_under

__all__ = ["Hit", "Doc", "KnowledgeError", "search", "read", "list_docs", "knowledge_dir"]

INDEX_VERSION = "1"
# bm25 column weights for (title, tags, body): a term in the title or the tags says
# more about what a document is about than the same term deep in its body.
WEIGHTS = (6.0, 4.0, 1.0)
SNIPPET_CHARS = 280
HEADING_BONUS = 1.0

_STOPWORDS = frozenset("""
a an and are as at be by can did do does for from had has have how i if in into is it
its me my of on or our so some someone something that the their them then there these
this to tried try tries trying was we were what when where which who why will with
would you your about after before than happen happened happens went go goes
does did done tell show know use used using any anyone anything
""".split())


@dataclass
class Hit:
    kind: str  # "doc" | "lesson"
    id: str
    title: str
    snippet: str
    score: float
    run: str | None = None


def knowledge_dir() -> Path:
    """knowledge/ of this checkout, or $EVOLVE_KNOWLEDGE_DIR when set."""
    env = os.environ.get("EVOLVE_KNOWLEDGE_DIR")
    if env:
        return Path(env)
    from evolve.paths import KNOWLEDGE_DIR
    return KNOWLEDGE_DIR


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "evolve"


def _normalise(text: str) -> str:
    """Fold British -isation/-ise spellings onto -ization/-ize (applied to the indexed
    text and to queries alike, so 'specialisation' finds 'specialization')."""
    text = re.sub(r"isation", "ization", text, flags=re.IGNORECASE)
    return re.sub(r"(\w{3,})is(e|ed|es|ing)\b", r"\1iz\2", text, flags=re.IGNORECASE)


def _terms(query: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", _normalise(query).lower())
    seen: list[str] = []
    for w in words:
        if w not in _STOPWORDS and w not in seen:
            seen.append(w)
    return seen


def _fts_query(query: str) -> str:
    terms = _terms(query)
    if not terms:
        raise KnowledgeError(f"query {query!r} has no searchable words")
    return " OR ".join(f'"{t}"' for t in terms)


# ----------------------------------------------------------------------------- index

def _rows(docs: list[Doc], lessons: list[Lesson]) -> list[dict]:
    rows = [{"kind": "doc", "key": d.id, "run": None, "title": d.title,
             "title_n": _normalise(f"{d.title} {d.id.replace('-', ' ')}"),
             "tags_n": _normalise(" ".join(d.tags + d.applies_to)),
             "body_n": _normalise(d.body), "body": d.body} for d in docs]
    rows += [{"kind": "lesson", "key": ls.id, "run": ls.run, "title": ls.title,
              "title_n": _normalise(ls.title), "tags_n": _normalise(ls.tags),
              "body_n": _normalise(ls.body), "body": ls.body} for ls in lessons]
    return rows


def _build(db: sqlite_utils.Database, docs: list[Doc], lessons: list[Lesson]) -> None:
    table = db["entries"]
    table.create({"kind": str, "key": str, "run": str, "title": str, "title_n": str,
                  "tags_n": str, "body_n": str, "body": str})
    table.insert_all(_rows(docs, lessons))
    table.enable_fts(["title_n", "tags_n", "body_n"], tokenize="porter")
    fts = table.detect_fts()
    weights = ", ".join(str(w) for w in WEIGHTS)
    db.execute(f"insert into [{fts}]([{fts}], rank) values ('rank', 'bm25({weights})')")
    db["meta"].insert({"key": "complete", "value": "1"})
    db.conn.commit()


def _fingerprint(kdir: Path) -> str:
    h = hashlib.sha256(f"index {INDEX_VERSION} {WEIGHTS}".encode())
    for p in doc_paths(kdir):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def _is_complete(path: Path) -> bool:
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
        try:
            row = conn.execute("select value from meta where key='complete'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row and row[0] == "1")


def _docs_index(kdir: Path) -> sqlite_utils.Database:
    """The cached documents index (a new file whenever any document changes)."""
    fingerprint = _fingerprint(kdir)
    cache = _cache_dir()
    # one name per (knowledge dir, content): checkouts sharing a cache never collide
    prefix = "knowledge-" + hashlib.sha256(str(kdir.resolve()).encode()).hexdigest()[:8]
    path = cache / f"{prefix}-{fingerprint}.db"
    if not (path.is_file() and _is_complete(path)):
        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".knowledge-", suffix=".db", dir=cache)
            os.close(fd)
        except OSError:
            return _memory_index(load_docs(kdir), [])
        try:
            db = sqlite_utils.Database(tmp)
            _build(db, load_docs(kdir), [])
            db.conn.close()
            os.replace(tmp, path)  # atomic: concurrent builders each install a whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for old in cache.glob(f"{prefix}-*.db"):  # earlier versions of this checkout's docs
            if old != path:
                try:
                    old.unlink()
                except OSError:
                    pass
    try:
        return sqlite_utils.Database(sqlite3.connect(readonly_uri(path), uri=True))
    except sqlite3.Error:
        return _memory_index(load_docs(kdir), [])


def _memory_index(docs: list[Doc], lessons: list[Lesson]) -> sqlite_utils.Database:
    db = sqlite_utils.Database(memory=True)
    _build(db, docs, lessons)
    return db


# ----------------------------------------------------------------------------- search

def _snippet(body: str, terms: list[str]) -> str:
    """The paragraph of `body` that mentions the most query terms (prefix-matched, so
    'packing' finds 'pack'), trimmed around its first match."""
    stems = [_stem(t) for t in terms]
    best, best_score = "", -1.0
    prose = re.sub(r"```.*?```", "\n\n", body, flags=re.S)  # code blocks make poor snippets
    for para in re.split(r"\n\s*\n", prose):
        if not para.strip():
            continue
        words = re.findall(r"[a-z0-9]+", _normalise(para).lower())
        score = sum(1 for s in stems if any(w.startswith(s) for w in words))
        if para.lstrip().startswith("#"):
            score -= 0.5
        if score > best_score:
            best, best_score = para, score
    text = " ".join(best.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    low = _normalise(text).lower()
    first = min((low.find(s) for s in stems if low.find(s) >= 0), default=0)
    start = max(0, first - 60)
    return ("..." if start else "") + text[start:start + SNIPPET_CHARS].strip() + "..."


def _stem(term: str) -> str:
    return term[:5] if len(term) > 5 else term


def _heading_bonus(title_tags: str, terms: list[str]) -> float:
    """Share of the query's terms found in an entry's title or tags (prefix-matched)."""
    words = re.findall(r"[a-z0-9]+", title_tags.lower())
    found = sum(1 for t in terms if any(w.startswith(_stem(t)) for w in words))
    return found / len(terms)


def _query(db: sqlite_utils.Database, query: str, k: int | None) -> list[Hit]:
    """bm25 (title and tags weighted up) plus a small bonus for query terms in the title
    or tags. On a corpus this small, terms found in more than half of the entries get an
    idf of ~0 from FTS5's bm25, so the bonus is what orders such queries sensibly."""
    terms = _terms(query)
    rows = db["entries"].search(_fts_query(query), include_rank=True,
                                columns=["kind", "key", "run", "title", "title_n", "tags_n", "body"])
    scored = []
    for r in rows:
        score = -float(r["rank"]) + HEADING_BONUS * _heading_bonus(
            f"{r['title_n']} {r['tags_n']}", terms)
        scored.append((score, r))
    scored.sort(key=lambda item: -item[0])
    if k is not None:
        scored = scored[:k]
    return [Hit(kind=r["kind"], id=r["key"], title=r["title"],
                snippet=_snippet(r["body"], terms), score=round(score, 4), run=r["run"])
            for score, r in scored]


def search(query: str, k: int = 5, *, run_dir: Path | None = None, all_runs: bool = False,
           runs_root: Path | None = None, kind: str | None = None) -> list[Hit]:
    """Ranked search over the documents and, when a run is named, its lessons.

    run_dir: lessons of that run's lineage.db. all_runs: lessons of every run under
    runs_root (default: run_dir.parent, else ./runs). kind: "doc" or "lesson" keeps
    only that kind of hit.
    """
    if k < 1:
        raise KnowledgeError(f"k must be at least 1, got {k}")
    if kind not in (None, "doc", "lesson"):
        raise KnowledgeError(f"kind must be 'doc' or 'lesson', got {kind!r}")
    _fts_query(query)  # validate before any work
    lessons: list[Lesson] = []
    run_dirs: list[Path] = []
    if run_dir is not None:
        run_dirs.append(Path(run_dir))
    if all_runs:
        root = Path(runs_root) if runs_root else (Path(run_dir).parent if run_dir else Path("runs"))
        run_dirs += [d for d in runs_under(root)
                     if not any(d.resolve() == r.resolve() for r in run_dirs)]
    for d in run_dirs:
        lessons += run_lessons(d)
    kdir = knowledge_dir()
    db = _memory_index(load_docs(kdir), lessons) if run_dirs else _docs_index(kdir)
    try:
        hits = _query(db, query, k if kind is None else None)
    finally:
        db.conn.close()
    if kind is not None:
        hits = [h for h in hits if h.kind == kind]
    return hits[:k]


def list_docs() -> list[Doc]:
    return load_docs(knowledge_dir())


def read(doc_id: str) -> Doc:
    """One document by id (its file stem); unknown ids suggest close matches."""
    docs = {d.id: d for d in list_docs()}
    key = doc_id.strip()
    if key.endswith(".md"):
        key = key[:-3]
    key = key.rsplit("/", 1)[-1]
    if key in docs:
        return docs[key]
    close = difflib.get_close_matches(key, list(docs), n=3, cutoff=0.55)
    close += [d for d in docs if key and key.lower() in d and d not in close][:3]
    hint = f"; did you mean: {', '.join(close[:4])}?" if close else "; see `evolve knowledge list`"
    raise KnowledgeError(f"unknown knowledge document {doc_id!r}{hint}")
