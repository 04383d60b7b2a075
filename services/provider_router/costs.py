"""Spend per request (tokens x price), totals over a window, and daily budgets per provider.

The request path only appends to memory (:meth:`CostLedger.record`); a background writer
stores what is pending every ``sync_s`` in one transaction, and at stop (a graceful shutdown
loses nothing). Each round also reads back the day's spend per provider as the database has
it, so routers sharing a database see each other's spend within ``sync_s``. Until it is
written, a record counts from memory, so a budget and ``GET /costs`` see it at once; once
written, it counts from the database only (never twice). If the database is away, records
wait in memory (up to ``MAX_PENDING``) and the writer tries again next round.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import date

import msgspec
import structlog

from services.provider_router.store import SpendStore
from services.provider_router.store_rows import SpendGroup, UsageRecord, utc_day

logger = structlog.get_logger("pas.router.costs")

MAX_PENDING = 200_000
"""Records kept in memory while the database is away; the oldest go first past it."""
_PRUNE_EVERY_S = 3600.0


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
    by_key: dict[str, CostTotal]
    """Per desk key (``desk_keys.py``); what the router's own token sent is under ``""``."""


def _per_day(
    records: Iterable[UsageRecord], payer: str = "provider"
) -> dict[tuple[date, str], float]:
    """Spend per (UTC day, provider), or per (UTC day, desk key) of what keys sent."""
    totals: dict[tuple[date, str], float] = defaultdict(float)
    for record in records:
        if name := getattr(record, payer):
            totals[utc_day(record.at), name] += record.cost_usd
    return totals


class CostLedger:
    def __init__(
        self,
        store: SpendStore,
        *,
        sync_s: float,
        retention_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sync_s = sync_s
        self._retention_s = retention_s
        self._clock = clock
        self._pending: list[UsageRecord] = []
        self._dropped = 0
        self._unwritten: dict[tuple[date, str], float] = defaultdict(float)
        """Pending spend per (UTC day, provider)."""
        self._stored: dict[tuple[date, str], float] = defaultdict(float)
        """Spend per (UTC day, provider) in the database, as last read (plus what this router
        wrote since)."""
        self._unwritten_by_key: dict[tuple[date, str], float] = defaultdict(float)
        self._stored_by_key: dict[tuple[date, str], float] = defaultdict(float)
        """The same per desk key."""
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the store, load the day's spend, then write in the background until stop."""
        # Made here, in the loop that serves (a test may start the same app in several).
        self._lock, self._stopping = asyncio.Lock(), asyncio.Event()
        await self._store.open()
        await self._store.prune(self._clock() - self._retention_s)
        await self.write()
        self._writer = asyncio.create_task(self._write_until_stopped(), name="spend-writer")

    async def stop(self) -> None:
        """Write what is pending, then close the store."""
        self._stopping.set()
        if self._writer is not None:
            await self._writer
        if self._pending:
            logger.error(
                "spend not stored: the database did not answer", records=len(self._pending)
            )
        await self._store.close()

    def record(self, record: UsageRecord) -> None:
        """Count a request's spend now; it is stored within ``sync_s``."""
        if len(self._pending) >= MAX_PENDING:
            dropped = self._pending.pop(0)
            self._dropped += 1
            self._unwritten[utc_day(dropped.at), dropped.provider] -= dropped.cost_usd
            if dropped.key:
                self._unwritten_by_key[utc_day(dropped.at), dropped.key] -= dropped.cost_usd
            logger.error("spend record dropped: the database has been away too long")
        self._pending.append(record)
        self._unwritten[utc_day(record.at), record.provider] += record.cost_usd
        if record.key:
            self._unwritten_by_key[utc_day(record.at), record.key] += record.cost_usd

    def spent_today(self, provider: str) -> float:
        """The provider's spend this UTC day, by every router on this database."""
        key = (utc_day(self._clock()), provider)
        return self._stored.get(key, 0.0) + self._unwritten.get(key, 0.0)

    def key_spent_today(self, name: str) -> float:
        """A desk key's spend this UTC day, by every router on this database."""
        key = (utc_day(self._clock()), name)
        return self._stored_by_key.get(key, 0.0) + self._unwritten_by_key.get(key, 0.0)

    async def write(self) -> None:
        """Store what is pending, then read back the day's spend as the database has it."""
        async with self._lock:
            batch, dropped_before = self._pending[:], self._dropped
            if batch:
                await self._store.append(batch)
                # Stored: from now on it counts from the database's side only. (Records are
                # appended at the end and dropped from the front, maybe during the await.)
                del self._pending[: max(0, len(batch) - (self._dropped - dropped_before))]
                self._unwritten = _per_day(self._pending)
                self._unwritten_by_key = _per_day(self._pending, "key")
                for key, cost in _per_day(batch).items():
                    self._stored[key] += cost
                for key, cost in _per_day(batch, "key").items():
                    self._stored_by_key[key] += cost
            today = utc_day(self._clock())
            spent = await self._store.spent_on(today)
            self._stored = defaultdict(float, {(today, p): c for p, c in spent.items()})
            by_key = await self._store.keys_spent_on(today)
            self._stored_by_key = defaultdict(float, {(today, k): c for k, c in by_key.items()})

    async def _write_until_stopped(self) -> None:
        last_prune = time.monotonic()
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._sync_s)
            stopping = self._stopping.is_set()  # then this round is the last
            try:
                await self.write()
                if time.monotonic() - last_prune > _PRUNE_EVERY_S:
                    last_prune = time.monotonic()
                    await self._store.prune(self._clock() - self._retention_s)
            except Exception as exc:  # the database is away: keep the records, try again
                logger.warning(
                    "spend not stored yet; will retry", error=str(exc), pending=len(self._pending)
                )
            if stopping:
                return

    async def report(self, window_s: float) -> CostReport:
        """Requests, tokens and USD over the last ``window_s``, stored and pending."""
        since = self._clock() - window_s
        async with self._lock:  # never while a batch is between memory and the database
            groups = await self._store.spend_since(since)
            pending = [r for r in self._pending if r.at >= since]
        total = CostTotal()
        by: dict[str, dict[str, CostTotal]] = {
            "provider": defaultdict(CostTotal),
            "model": defaultdict(CostTotal),
            "capability": defaultdict(CostTotal),
            "key": defaultdict(CostTotal),
        }
        rows = [
            *groups,
            *(
                SpendGroup(
                    r.provider,
                    r.model,
                    r.capability,
                    r.key,
                    1,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cost_usd,
                )
                for r in pending
            ),
        ]
        for row in rows:
            for bucket in (
                total,
                by["provider"][row.provider],
                by["model"][row.model],
                by["capability"][row.capability],
                by["key"][row.key],
            ):
                bucket.requests += row.requests
                bucket.prompt_tokens += row.prompt_tokens
                bucket.completion_tokens += row.completion_tokens
                bucket.cost_usd += row.cost_usd
        return CostReport(
            window_s=window_s,
            total=total,
            by_provider=dict(by["provider"]),
            by_model=dict(by["model"]),
            by_capability=dict(by["capability"]),
            by_key=dict(by["key"]),
        )
