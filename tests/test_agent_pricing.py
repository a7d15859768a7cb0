"""Prices: cached prompt tokens at the cached rate, the --price override, and the rule
that a --max-usd run refuses an unpriced model (at `start`, before any directory)."""

from __future__ import annotations

import pytest

from evolve.agent.budget import RunBudget
from evolve.agent.pricing import Price, PriceTable, PriceTableError, require_price
from evolve.config import AgentConfig
from evolve.driver import StartOptions, UsageError, create_run


def test_cached_tokens_are_priced_as_cached():
    p = PriceTable.load().lookup("gpt-5.4")
    # 1M prompt tokens of which 800k from the cache, 100k out: 0.2*2.50 + 0.8*0.25 + 0.1*15
    assert p.cost(1_000_000, 100_000, 800_000) == pytest.approx(0.5 + 0.2 + 1.5)
    assert RunBudget(p, None).cost(1_000_000, 100_000, 800_000) == pytest.approx(2.2)
    # without a cached rate, cached tokens cost full input (never less than billed)
    assert Price(1.0, 2.0).cost(1_000_000, 0, 500_000) == pytest.approx(1.0)


def test_current_models_are_priced():
    t = PriceTable.load()
    for m in ("gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.1", "gpt-5-codex", "o3-mini",
              "o3-pro", "gpt-5.4-2026-03-05"):
        assert t.lookup(m) is not None, m


def test_price_override():
    assert Price.parse("1.25,10") == Price(1.25, 10.0)
    assert Price.parse("1.25,10,0.125").cached_input_per_mtok == 0.125
    for bad in ("1.25", "a,b", "1,-2", "1,2,3,4"):
        with pytest.raises(PriceTableError, match="IN,OUT"):
            Price.parse(bad)
    assert require_price("my-llama", None, "0.1,0.2", 5.0) == Price(0.1, 0.2)


def test_unpriced_model_with_max_usd_is_refused_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert require_price("my-llama", None, None, None) is None  # no cap: tokens only
    agent = AgentConfig(model="my-llama", max_usd=5.0)
    opts = StartOptions(target="gqa", operator="agent", runs_dir=tmp_path, name="r",
                        agent=agent)
    with pytest.raises(UsageError, match="no price.*--price IN,OUT"):
        create_run(opts)
    assert not (tmp_path / "r").exists()
    agent.price = "0.1,0.2"
    create_run(opts).close()
