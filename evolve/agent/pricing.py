"""Token prices: {model: {input_per_mtok, output_per_mtok}} from a TOML or JSON table."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SNAPSHOT = re.compile(r"-\d[\d-]*")
DEFAULT_TABLE = Path(__file__).resolve().parent / "prices.toml"


class PriceTableError(Exception):
    """A price table file is missing or malformed."""


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6


@dataclass(frozen=True)
class PriceTable:
    prices: dict[str, Price]  # model name -> price

    @classmethod
    def load(cls, path: Path | str | None = None) -> "PriceTable":
        path = Path(path) if path is not None else DEFAULT_TABLE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise PriceTableError(f"cannot read price table {path}: {e.strerror}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise PriceTableError(f"malformed price table {path}: {e}") from None
        prices: dict[str, Price] = {}
        for model, row in data.items():
            try:
                prices[str(model)] = Price(float(row["input_per_mtok"]),
                                           float(row["output_per_mtok"]))
            except (TypeError, KeyError, ValueError):
                raise PriceTableError(f"price table {path}: model {model!r} needs numeric "
                                      "input_per_mtok and output_per_mtok") from None
        return cls(prices)

    def lookup(self, model: str) -> Price | None:
        """Exact name first, then a dated snapshot of a table key
        ("gpt-4.1-mini-2025-04-14" uses "gpt-4.1-mini"; "o3-mini" does not use "o3")."""
        if model in self.prices:
            return self.prices[model]
        best = max((k for k in self.prices if _SNAPSHOT.fullmatch(model[len(k):])
                    and model.startswith(k)), key=len, default=None)
        return self.prices[best] if best else None
