"""Token prices: {model: {input_per_mtok, output_per_mtok, cached_input_per_mtok}} from a
TOML or JSON table, a `--price IN,OUT[,CACHED]` override, and the rule that a run with
`--max-usd` needs a price (an unpriced model would spend without limit)."""

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
    """A price table file is missing or malformed, or a --price value is not a price."""


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None  # None: cached tokens cost full input price

    def cost(self, tokens_in: int, tokens_out: int, cached_in: int = 0) -> float:
        """USD; `tokens_in` includes the `cached_in` prompt tokens read from the cache."""
        cached = max(0, min(cached_in, tokens_in))
        rate = self.input_per_mtok if self.cached_input_per_mtok is None \
            else self.cached_input_per_mtok
        return ((tokens_in - cached) * self.input_per_mtok + cached * rate
                + tokens_out * self.output_per_mtok) / 1e6

    @classmethod
    def parse(cls, text: str) -> "Price":
        """`IN,OUT` or `IN,OUT,CACHED`: USD per million tokens (the --price flag)."""
        try:
            parts = [float(p) for p in text.split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 3) or any(p < 0 for p in parts):
            raise PriceTableError(f"--price {text!r}: give IN,OUT (or IN,OUT,CACHED) in USD "
                                  "per million tokens, e.g. --price 1.25,10")
        return cls(*parts)


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
                cached = row.get("cached_input_per_mtok")
                prices[str(model)] = Price(float(row["input_per_mtok"]),
                                           float(row["output_per_mtok"]),
                                           None if cached is None else float(cached))
            except (AttributeError, TypeError, KeyError, ValueError):
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


def model_price(model: str, table: Path | str | None, override: str | None) -> Price | None:
    """The price a run uses: `--price` if given, else the table's (None: unpriced)."""
    if override:
        return Price.parse(override)
    return PriceTable.load(table).lookup(model)


def require_price(model: str, table: Path | str | None, override: str | None,
                  max_usd: float | None) -> Price | None:
    """The run's price; a `--max-usd` run refuses an unpriced model (PriceTableError)."""
    price = model_price(model, table, override)
    if price is None and max_usd is not None:
        raise PriceTableError(
            f"model {model!r} has no price in the price table, so --max-usd cannot be "
            "enforced: pass --price IN,OUT (USD per million input,output tokens) or "
            "--price-table FILE, or drop --max-usd")
    return price
