"""Prompt files of the agent operator: defaults in evolve/prompts/, overridable per file
by a user directory (`--prompts DIR`). Placeholders are `{name}`; unknown names and
other braces are left as they are (so code in a prompt needs no escaping)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts"
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class PromptError(Exception):
    """A prompt directory or file is missing or unreadable."""


def render(template: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values
                            else m.group(0), template)


@dataclass
class Prompts:
    """One field per prompt file: `system` is agent_system.md, and so on."""
    system: str
    brief: str
    supervisor: str
    nudge: str

    @classmethod
    def load(cls, override_dir: Path | str | None = None) -> "Prompts":
        """Each file from override_dir when it has it, else the packaged default."""
        override = Path(override_dir) if override_dir else None
        if override is not None and not override.is_dir():
            raise PromptError(f"prompts directory {override} does not exist")
        texts = {}
        for f in fields(cls):
            name = f"agent_{f.name}.md"
            path = override / name if override and (override / name).is_file() else DEFAULT_DIR / name
            try:
                texts[f.name] = path.read_text(encoding="utf-8")
            except OSError as e:
                raise PromptError(f"cannot read prompt {path}: {e.strerror}") from None
        return cls(**texts)
