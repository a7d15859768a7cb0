"""The kernels/ git repository of a run (GitPython).

One commit of `kernel.py` per candidate; its git parents are its lineage parents
(crossover: first parent = primary). Refs: refs/candidates/<id>, refs/heads/best
(HEAD points at best, and the working tree holds the best kernel).

A candidate's commit message is its hypothesis plus trailers with everything known before
its evaluation (operator, parents, depth, session, tokens, changes), so that `evolve
resume` can rebuild the `Candidate` from git alone (`candidate_at`) when the process died
between the commit and the DB row.
"""

from __future__ import annotations

import os
import re
import tempfile
from io import BytesIO
from pathlib import Path

import git
from git import Actor, Blob, Commit, IndexFile
from git.index.typ import BaseIndexEntry
from gitdb import IStream

from evolve.records import Candidate

KERNEL_FILE = "kernel.py"
_AUTHOR = Actor("evolve", "evolve@localhost")
_REF_PREFIX = "refs/candidates/"
_TRAILER_RE = re.compile(r"^([A-Z][A-Za-z0-9-]*): (.*)$")


class RepoError(Exception):
    """The kernels repository is missing a commit or ref, or is not a repository."""


class KernelRepo:
    def __init__(self, repo: git.Repo):
        self.repo = repo

    @classmethod
    def init(cls, path: Path) -> "KernelRepo":
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(path)
        # HEAD follows the champion; nothing is ever checked out besides it.
        repo.git.symbolic_ref("HEAD", "refs/heads/best")
        with repo.config_writer() as cw:
            cw.set_value("user", "name", _AUTHOR.name)
            cw.set_value("user", "email", _AUTHOR.email)
            cw.set_value("gc", "auto", "0")
        return cls(repo)

    @classmethod
    def open(cls, path: Path) -> "KernelRepo":
        try:
            return cls(git.Repo(Path(path)))
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise RepoError(f"{path} is not a git repository") from None

    # --- writing -------------------------------------------------------------

    def commit_candidate(self, cid: int, source: str, parents: list[str], message: str) -> str:
        """Commit `source` as kernel.py with the given parent shas; set refs/candidates/<cid>."""
        data = source.encode("utf-8")
        stream = self.repo.odb.store(IStream(Blob.type, len(data), BytesIO(data)))
        fd, tmp_index = tempfile.mkstemp(prefix="index-", dir=self.repo.git_dir)
        os.close(fd)
        os.unlink(tmp_index)
        try:
            index = IndexFile(self.repo, tmp_index)
            index.add([BaseIndexEntry((0o100644, stream.binsha, 0, KERNEL_FILE))],
                      write=False)
            tree = index.write_tree()
        finally:
            if os.path.exists(tmp_index):
                os.unlink(tmp_index)
        parent_commits = [self.repo.commit(p) for p in parents]
        commit = Commit.create_from_tree(self.repo, tree, message, parent_commits=parent_commits,
                                         head=False, author=_AUTHOR, committer=_AUTHOR)
        git.Reference.create(self.repo, f"{_REF_PREFIX}{int(cid)}", commit, force=True)
        return commit.hexsha

    def commit(self, c: Candidate, parents: list[str]) -> Candidate:
        """Commit a numbered candidate (`Candidate.committed`); it comes back with its sha."""
        c.commit_sha = self.commit_candidate(c.id, c.source, parents, candidate_message(c))
        return c

    def candidate_at(self, cid: int) -> Candidate:
        """The candidate of a commit, as it was before its evaluation (an orphan ref)."""
        t = self.trailers_of(cid)
        msg = self.message_of(cid).splitlines()
        first = msg[0].split(": ", 1)[1] if msg and ": " in msg[0] else ""
        body: list[str] = []
        for line in msg[2:]:
            if line.split(": ", 1)[0] in t:
                break
            body.append(line)
        opt = lambda v: int(v) if v not in (None, "", "None") else None  # noqa: E731
        return Candidate(
            parent_id=opt(t.get("Parent-Id")), source=self.source_at(cid),
            hypothesis="\n".join(body).strip() or first, changes_json=t.get("Changes", "{}"),
            operator=t.get("Operator", "unknown"), parent2_id=opt(t.get("Parent2-Id")),
            session_id=t.get("Session-Id") or None, tokens_in=int(t.get("Tokens-In", 0)),
            tokens_out=int(t.get("Tokens-Out", 0)), cost_usd=float(t.get("Cost-Usd", 0.0)),
            variation_seconds=float(t.get("Variation-Seconds", 0.0)),
        ).committed(cid, int(t.get("Depth", 0)), self._commit_of(cid).hexsha)

    def set_best(self, cid: int) -> None:
        """Move refs/heads/best (= HEAD) to the candidate and check its kernel.py out."""
        commit = self._commit_of(cid)
        self.repo.head.reset(commit, index=True, working_tree=True)

    def restore_ref(self, cid: int, sha: str) -> None:
        """Point refs/candidates/<cid> at an existing commit (repairs a lost ref)."""
        git.Reference.create(self.repo, f"{_REF_PREFIX}{int(cid)}", self.repo.commit(sha),
                             force=True)

    # --- reading -------------------------------------------------------------

    def candidate_refs(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for ref in self.repo.references:
            if ref.path.startswith(_REF_PREFIX):
                tail = ref.path[len(_REF_PREFIX):]
                if tail.isdigit():
                    out[int(tail)] = ref.commit.hexsha
        return dict(sorted(out.items()))

    def source_at(self, sha_or_cid: int | str) -> str:
        commit = self._commit_of(sha_or_cid)
        try:
            blob = commit.tree / KERNEL_FILE
        except KeyError:
            raise RepoError(f"commit {commit.hexsha[:10]} has no {KERNEL_FILE}") from None
        return blob.data_stream.read().decode("utf-8")

    def diff(self, a_cid: int, b_cid: int) -> str:
        a, b = self._commit_of(a_cid), self._commit_of(b_cid)
        return self.repo.git.diff(a.hexsha, b.hexsha, "--", KERNEL_FILE,
                                  src_prefix=f"{a_cid}/", dst_prefix=f"{b_cid}/")

    def parents_of(self, sha_or_cid: int | str) -> list[str]:
        return [p.hexsha for p in self._commit_of(sha_or_cid).parents]

    def message_of(self, sha_or_cid: int | str) -> str:
        msg = self._commit_of(sha_or_cid).message
        return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg

    def trailers_of(self, sha_or_cid: int | str) -> dict[str, str]:
        """Trailers (`Key: value` lines) of the candidate's commit message."""
        out: dict[str, str] = {}
        for line in self.message_of(sha_or_cid).splitlines():
            m = _TRAILER_RE.match(line)
            if m:
                out[m.group(1)] = m.group(2)
        return out

    def best_sha(self) -> str | None:
        ref = git.Reference(self.repo, "refs/heads/best")
        return ref.commit.hexsha if ref.is_valid() else None

    def _commit_of(self, sha_or_cid: int | str) -> Commit:
        try:
            if isinstance(sha_or_cid, int) or (isinstance(sha_or_cid, str)
                                               and sha_or_cid.isdigit() and len(sha_or_cid) < 12):
                return git.Reference(self.repo, f"{_REF_PREFIX}{int(sha_or_cid)}").commit
            return self.repo.commit(sha_or_cid)
        except (ValueError, git.BadName, git.BadObject):
            raise RepoError(f"no commit for candidate {sha_or_cid!r}") from None


def commit_message(cid: int, hypothesis: str, trailers: dict[str, object]) -> str:
    """`candidate <id>: <first line>`, the full hypothesis, then one trailer per key."""
    first = (hypothesis.strip().splitlines() or ["(no hypothesis)"])[0][:120]
    body = hypothesis.strip()
    lines = [f"candidate {cid}: {first}", ""]
    if body and body != first:
        lines += [body, ""]
    lines += [f"{k}: {str(v).replace(chr(10), ' ')}" for k, v in trailers.items() if v is not None]
    return "\n".join(lines) + "\n"


def candidate_message(c: Candidate) -> str:
    return commit_message(c.id, c.hypothesis, {
        "Candidate-Id": c.id, "Operator": c.operator, "Parent-Id": c.parent_id,
        "Parent2-Id": c.parent2_id, "Depth": c.depth, "Session-Id": c.session_id,
        "Tokens-In": c.tokens_in or None, "Tokens-Out": c.tokens_out or None,
        "Cost-Usd": repr(c.cost_usd) if c.cost_usd else None,
        "Variation-Seconds": f"{c.variation_seconds:.3f}", "Changes": c.changes_json})
