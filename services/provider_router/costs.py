"""Spend per request (tokens x price), totals over a window, and daily budgets per provider."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

_MAX_RECORDS = 200_000


class UsageRecord(msgspec.Struct, frozen=True):
    at: float
    provider: str
    model: str
    capability: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class CostTotal(msgspec.Struct, kw_only=True):
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class CostReport(msgspec.Struct, kw_only=True):
    window_s: float
    total: CostTotal
    by_provider: dict[str, CostTotal]
    by_model: dict[str, CostTotal]
    by_capability: dict[str, CostTotal]


class CostLedger:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._records: deque[UsageRecord] = deque(maxlen=_MAX_RECORDS)
        self._today: dict[str, float] = defaultdict(float)
        self._day = self._utc_day()

    def _utc_day(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).date().isoformat()

    def record(self, record: UsageRecord) -> None:
        self._records.append(record)
        self._roll_day()
        self._today[record.provider] += record.cost_usd

    def _roll_day(self) -> None:
        day = self._utc_day()
        if day != self._day:
            self._day = day
            self._today.clear()

    def spent_today(self, provider: str) -> float:
        self._roll_day()
        return self._today.get(provider, 0.0)

    def report(self, window_s: float) -> CostReport:
        since = self._clock() - window_s
        total = CostTotal()
        groups: dict[str, dict[str, CostTotal]] = {
            "provider": defaultdict(CostTotal),
            "model": defaultdict(CostTotal),
            "capability": defaultdict(CostTotal),
        }
        for record in self._records:
            if record.at < since:
                continue
            for bucket in (
                total,
                groups["provider"][record.provider],
                groups["model"][record.model],
                groups["capability"][record.capability],
            ):
                bucket.requests += 1
                bucket.prompt_tokens += record.prompt_tokens
                bucket.completion_tokens += record.completion_tokens
                bucket.cost_usd += record.cost_usd
        return CostReport(
            window_s=window_s,
            total=total,
            by_provider=dict(groups["provider"]),
            by_model=dict(groups["model"]),
            by_capability=dict(groups["capability"]),
        )
