"""KernelRepo: one commit per candidate, git parents = lineage parents, refs, best."""

from __future__ import annotations

import subprocess

import pytest

from evolve.gitrepo import KernelRepo, RepoError, commit_message
from evolve.records import Candidate


def test_lineage_commits_refs_and_best(tmp_path):
    repo = KernelRepo.init(tmp_path / "kernels")
    a = repo.commit_candidate(0, "x = 0\n", [], commit_message(0, "seed", {"Candidate-Id": 0}))
    b = repo.commit_candidate(1, "x = 1\n", [a], commit_message(1, "bump", {"Candidate-Id": 1}))
    c = repo.commit_candidate(2, "x = 2\n", [b, a], commit_message(2, "cross", {}))
    assert repo.candidate_refs() == {0: a, 1: b, 2: c}
    assert repo.parents_of(2) == [b, a] and repo.parents_of(0) == []
    assert repo.source_at(1) == "x = 1\n" and repo.source_at(c) == "x = 2\n"
    assert "-x = 0" in repo.diff(0, 2) and "+x = 2" in repo.diff(0, 2)
    assert repo.best_sha() is None
    repo.set_best(1)
    assert repo.best_sha() == b
    # HEAD follows best and the working tree holds the champion
    assert (tmp_path / "kernels" / "kernel.py").read_text() == "x = 1\n"
    log = subprocess.run(["git", "-C", str(tmp_path / "kernels"), "rev-list", "--parents",
                          "-n", "1", "refs/candidates/2"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert log == [c, b, a]
    status = subprocess.run(["git", "-C", str(tmp_path / "kernels"), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert status == ""
    subprocess.run(["git", "-C", str(tmp_path / "kernels"), "update-ref", "-d",
                    "refs/candidates/2"], check=True)  # a lost ref
    assert 2 not in repo.candidate_refs()
    repo.restore_ref(2, c)
    assert repo.candidate_refs()[2] == c
    with pytest.raises(RepoError):
        repo.source_at(9)
    with pytest.raises(RepoError):
        KernelRepo.open(tmp_path / "nothing")


def test_a_candidate_roundtrips_through_its_commit_message(tmp_path):
    repo = KernelRepo.init(tmp_path / "k")
    seed = repo.commit_candidate(0, "s\n", [], commit_message(0, "seed", {}))
    c = Candidate(parent_id=0, source="y = 3\n", operator="agent",
                  hypothesis="BLOCK_N 64 -> 128: bigger tiles\n\nmore",
                  changes_json='{"knobs": {"BLOCK_N": {"from": 64, "to": 128}}, "recipes": []}',
                  session_id="sess-1", tokens_in=120, tokens_out=30, cost_usd=0.0125,
                  variation_seconds=4.5).committed(3, depth=1)
    c = repo.commit(c, [seed])
    assert repo.candidate_at(3) == c and c.commit_sha and c.status == "pending"
    assert repo.message_of(3).startswith("candidate 3: BLOCK_N 64 -> 128: bigger tiles\n")
    assert repo.trailers_of(3)["Operator"] == "agent"
