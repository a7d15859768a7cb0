"""Well-known locations: the project root, seed kernels, knowledge base, default runs dir."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SEEDS_DIR = REPO_ROOT / "seeds"
KNOWLEDGE_DIR = REPO_ROOT / "knowledge"
PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
DEFAULT_RUNS_DIR = Path("runs")

# Default seed file per target (``--seed FILE`` overrides).
DEFAULT_SEEDS = {"gqa": "gqa.py", "mha": "mha.py", "decode": "decode.py"}


def default_seed(target: str) -> Path:
    """The seed kernel used when ``--seed`` is not given."""
    name = DEFAULT_SEEDS.get(target, f"{target}.py")
    return SEEDS_DIR / name
