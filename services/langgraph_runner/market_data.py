"""Daily closes from a local file, and the figures the workflows' tools compute from them.

The sample in ``data/market_data.json`` holds approximate public closes of a few tickers
(October to mid-November 2024); ``RUNNER_MARKET_DATA_PATH`` points at another file of the same
shape.
"""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import date
from pathlib import Path
from typing import Annotated

import msgspec

SAMPLE_MARKET_DATA = Path(__file__).parent / "data" / "market_data.json"
TRADING_DAYS_PER_YEAR = 252
Z_99 = 2.326_348
"""One-sided 99% quantile of the standard normal distribution (parametric VaR)."""


class TickerSeries(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    close: Annotated[list[float], msgspec.Meta(min_length=2)]


class MarketDataFile(msgspec.Struct, frozen=True, kw_only=True):
    description: str = ""
    currency: str = "USD"
    dates: Annotated[list[date], msgspec.Meta(min_length=2)]
    tickers: dict[str, TickerSeries]


class PricePoint(msgspec.Struct, frozen=True, kw_only=True):
    date: date
    close: float


class ReturnMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """Figures over the last ``days`` closes (``days - 1`` daily returns)."""

    ticker: str
    days: int
    start_date: date
    end_date: date
    first_close: float
    last_close: float
    total_return_pct: float
    annualized_volatility_pct: float
    """Sample standard deviation of daily log returns, times the square root of 252."""
    max_drawdown_pct: float
    """Largest fall from a running peak, as a positive percentage."""


class UnknownTicker(LookupError):
    def __init__(self, ticker: str, known: list[str]) -> None:
        super().__init__(f"no price history for {ticker!r}; known tickers: {known}")


class MarketData:
    """The loaded file, with checks that every series is as long as the dates."""

    def __init__(self, data: MarketDataFile) -> None:
        for ticker, series in data.tickers.items():
            if len(series.close) != len(data.dates):
                raise ValueError(
                    f"{ticker}: {len(series.close)} closes for {len(data.dates)} dates"
                )
            if any(price <= 0 for price in series.close):
                raise ValueError(f"{ticker}: closes must be positive")
        self._data = data

    @classmethod
    def load(cls, path: str | Path | None = None) -> MarketData:
        file = Path(path) if path else SAMPLE_MARKET_DATA
        return cls(msgspec.json.decode(file.read_bytes(), type=MarketDataFile))

    @property
    def tickers(self) -> list[str]:
        return sorted(self._data.tickers)

    @property
    def max_days(self) -> int:
        return len(self._data.dates)

    @property
    def currency(self) -> str:
        return self._data.currency

    def name(self, ticker: str) -> str:
        return self._series(ticker).name

    def _series(self, ticker: str) -> TickerSeries:
        series = self._data.tickers.get(ticker.upper())
        if series is None:
            raise UnknownTicker(ticker, self.tickers)
        return series

    def history(self, ticker: str, days: int) -> list[PricePoint]:
        """The last ``days`` closes (all of them if fewer are held), oldest first."""
        if days < 1:
            raise ValueError("days must be at least 1")
        closes = self._series(ticker).close[-days:]
        dates = self._data.dates[-len(closes) :]
        return [PricePoint(date=d, close=c) for d, c in zip(dates, closes, strict=True)]

    def last_close(self, ticker: str) -> PricePoint:
        return self.history(ticker, 1)[0]

    def metrics(self, ticker: str, days: int) -> ReturnMetrics:
        if days < 3:
            raise ValueError("days must be at least 3 (two daily returns)")
        points = self.history(ticker, days)
        closes = [p.close for p in points]
        log_returns = [math.log(b / a) for a, b in itertools.pairwise(closes)]
        peak = closes[0]
        drawdown = 0.0
        for close in closes:
            peak = max(peak, close)
            drawdown = max(drawdown, 1 - close / peak)
        return ReturnMetrics(
            ticker=ticker.upper(),
            days=len(points),
            start_date=points[0].date,
            end_date=points[-1].date,
            first_close=closes[0],
            last_close=closes[-1],
            total_return_pct=round((closes[-1] / closes[0] - 1) * 100, 4),
            annualized_volatility_pct=round(
                statistics.stdev(log_returns) * math.sqrt(TRADING_DAYS_PER_YEAR) * 100, 4
            ),
            max_drawdown_pct=round(drawdown * 100, 4),
        )

    def daily_volatility(self, ticker: str, days: int) -> float:
        """Sample standard deviation of daily log returns over the last ``days`` closes."""
        closes = [p.close for p in self.history(ticker, days)]
        if len(closes) < 3:
            raise ValueError("need at least three closes")
        returns = [math.log(b / a) for a, b in itertools.pairwise(closes)]
        return statistics.stdev(returns)
