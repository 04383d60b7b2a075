"""The sample market data and the figures the tools compute, against numpy on the raw file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from services.langgraph_runner.market_data import (
    SAMPLE_MARKET_DATA,
    MarketData,
    MarketDataFile,
    TickerSeries,
    UnknownTicker,
)

RAW = json.loads(Path(SAMPLE_MARKET_DATA).read_text())


def test_the_sample_is_whole_and_in_order() -> None:
    market = MarketData.load()

    dates = [date.fromisoformat(d) for d in RAW["dates"]]
    assert dates == sorted(dates)
    assert len(set(dates)) == len(dates)
    assert all(d.weekday() < 5 for d in dates)
    assert market.tickers == ["AAPL", "JPM", "MSFT", "NVDA", "SPY"]
    assert market.max_days == len(dates)
    assert "approximate" in RAW["description"]


@pytest.mark.parametrize("ticker", ["AAPL", "NVDA", "SPY"])
@pytest.mark.parametrize("days", [3, 10, 34])
def test_metrics_match_an_independent_computation(ticker: str, days: int) -> None:
    prices = np.array(RAW["tickers"][ticker]["close"][-days:])
    log_returns = np.diff(np.log(prices))

    metrics = MarketData.load().metrics(ticker.lower(), days)

    assert metrics.ticker == ticker
    assert metrics.days == days
    assert metrics.start_date == date.fromisoformat(RAW["dates"][-days])
    assert metrics.total_return_pct == pytest.approx((prices[-1] / prices[0] - 1) * 100, abs=1e-4)
    assert metrics.annualized_volatility_pct == pytest.approx(
        np.std(log_returns, ddof=1) * np.sqrt(252) * 100, abs=1e-4
    )
    drawdown = np.max(1 - prices / np.maximum.accumulate(prices)) * 100
    assert metrics.max_drawdown_pct == pytest.approx(drawdown, abs=1e-4)


def test_history_and_bad_requests() -> None:
    market = MarketData.load()

    history = market.history("JPM", 2)
    assert [(p.date.isoformat(), p.close) for p in history] == list(
        zip(RAW["dates"][-2:], RAW["tickers"]["JPM"]["close"][-2:], strict=True)
    )
    assert len(market.history("JPM", 1000)) == market.max_days
    with pytest.raises(UnknownTicker, match="TSLA"):
        market.metrics("TSLA", 5)
    with pytest.raises(ValueError, match="days"):
        market.metrics("AAPL", 2)


def test_a_file_with_a_short_series_is_refused() -> None:
    data = MarketDataFile(
        dates=[date(2024, 1, 2), date(2024, 1, 3)],
        tickers={"X": TickerSeries(name="X", close=[1.0, 2.0, 3.0])},
    )

    with pytest.raises(ValueError, match="3 closes for 2 dates"):
        MarketData(data)
