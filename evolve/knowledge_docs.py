"""Knowledge documents: the markdown files under knowledge/ and their front matter.

A document is a markdown file whose first lines are a front-matter block between two
`---` lines. PyYAML is not a dependency, so the block is parsed here; the accepted
subset is small on purpose:

    key: scalar value            -> str (surrounding quotes removed)
    key: [a, b, "c, d"]          -> list[str]
    key:                         -> list[str] from the "- item" lines that follow
      - item
    # comment lines and blank lines are ignored

Anything else (nested mappings, multi-line scalars, tabs for indentation) is a
`FrontMatterError` naming the file and line, so a malformed document fails loudly in
the knowledge test instead of being indexed half-read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_KEYS = ("title", "tags", "applies_to", "sources")
LIST_KEYS = ("tags", "applies_to", "sources")

_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*:(.*)$")
_FENCE_RE = re.compile(r"^```([A-Za-z0-9_+-]*)[ \t]*([A-Za-z0-9_ -]*)$")


class KnowledgeError(Exception):
    """Bad use of the knowledge base (unknown document, unreadable run, bad query)."""


class FrontMatterError(KnowledgeError):
    """A knowledge document's front matter is missing or outside the accepted subset."""


@dataclass
class Doc:
    id: str
    title: str
    tags: list[str]
    applies_to: list[str]
    sources: list[str]
    body: str
    path: Path
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Snippet:
    """One fenced python block of a document."""

    doc_id: str
    index: int  # 0-based among the document's python blocks
    line: int  # 1-based line of the opening fence in the file
    runnable: bool
    code: str


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _split_flow_list(inner: str, where: str) -> list[str]:
    """Split the inside of `[a, "b, c", d]` on commas outside quotes."""
    items: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    for ch in inner:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            buf.append(ch)
        elif ch == ",":
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quote:
        raise FrontMatterError(f"{where}: unterminated quote in list")
    items.append("".join(buf))
    out = [_unquote(i) for i in items]
    if out == [""]:
        return []
    if any(i == "" for i in out):
        raise FrontMatterError(f"{where}: empty item in list")
    return out


def parse_front_matter(text: str, name: str = "<text>") -> tuple[dict[str, object], str]:
    """Split `text` into (front matter dict, body). Raises FrontMatterError."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise FrontMatterError(f"{name}: no front matter (first line must be '---')")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise FrontMatterError(f"{name}: front matter is not closed by a '---' line") from None
    meta: dict[str, object] = {}
    open_list: str | None = None  # key whose "- item" lines we are reading
    for no in range(1, end):
        raw = lines[no]
        where = f"{name}:{no + 1}"
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise FrontMatterError(f"{where}: tab indentation is not supported")
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("- "):
            if open_list is None:
                raise FrontMatterError(f"{where}: list item without a key above it")
            item = _unquote(stripped[2:])
            if not item:
                raise FrontMatterError(f"{where}: empty list item")
            meta[open_list].append(item)  # type: ignore[union-attr]
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
            meta[key] = []
            open_list = key
        elif value.startswith("["):
            if not value.endswith("]"):
                raise FrontMatterError(f"{where}: list for {key!r} must close with ']' on the same line")
            meta[key] = _split_flow_list(value[1:-1], where)
        else:
            meta[key] = _unquote(value)
    body = "\n".join(lines[end + 1:]).strip("\n") + "\n"
    return meta, body


def _as_list(meta: dict[str, object], key: str) -> list[str]:
    value = meta.get(key, [])
    if isinstance(value, str):
        return [value] if value else []
    return list(value)  # type: ignore[arg-type]


def load_doc(path: Path) -> Doc:
    text = path.read_text(encoding="utf-8")
    meta, body = parse_front_matter(text, path.name)
    missing = [k for k in REQUIRED_KEYS if not meta.get(k)]
    if missing:
        raise FrontMatterError(f"{path.name}: front matter lacks {', '.join(missing)}")
    title = meta["title"]
    if not isinstance(title, str):
        raise FrontMatterError(f"{path.name}: title must be a single line of text")
    extra = {k: v for k, v in meta.items() if k not in REQUIRED_KEYS}
    return Doc(id=path.stem, title=title, tags=_as_list(meta, "tags"),
               applies_to=_as_list(meta, "applies_to"), sources=_as_list(meta, "sources"),
               body=body, path=path, extra=extra)


def doc_paths(knowledge_dir: Path) -> list[Path]:
    if not knowledge_dir.is_dir():
        raise KnowledgeError(f"knowledge directory not found: {knowledge_dir}")
    return sorted(p for p in knowledge_dir.glob("*.md") if p.name.lower() != "readme.md")


def load_docs(knowledge_dir: Path) -> list[Doc]:
    return [load_doc(p) for p in doc_paths(knowledge_dir)]


def python_snippets(doc: Doc) -> list[Snippet]:
    """Fenced ```python blocks of a document; ```python runnable marks runnable ones."""
    snippets: list[Snippet] = []
    text = doc.path.read_text(encoding="utf-8")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE_RE.match(lines[i].strip())
        if m:
            lang, info = m.group(1).lower(), m.group(2).split()
            start = i
            i += 1
            block: list[str] = []
            while i < len(lines) and lines[i].strip() != "```":
                block.append(lines[i])
                i += 1
            if lang in ("python", "py"):
                snippets.append(Snippet(doc.id, len(snippets), start + 1,
                                        "runnable" in info, "\n".join(block) + "\n"))
        i += 1
    return snippets
