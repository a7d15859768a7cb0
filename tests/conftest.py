"""Shared pytest setup: CPU runs use the Triton interpreter; GPU tests skip without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    # must be set before any @triton.jit function is defined
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def fixture_run(tmp_path_factory):
    """A real small run made by `evolve start --target gqa --max-candidates 4` (once per
    session; see tests/fixture_run.py). Read-only: copy it before changing it."""
    from fixture_run import make_fixture_run

    return make_fixture_run(tmp_path_factory.getbasetemp())
