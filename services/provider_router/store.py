"""Where spend survives restarts and is shared: one small protocol, SQLite and PostgreSQL.

Two tables: every request's spend (``pas_router_spend``, for ``GET /costs``), and each
provider's total per UTC day (``pas_router_daily_spend``, for the daily budgets), written
together in one transaction so that they always agree. Several routers may share one
database: each adds to the day's totals (an upsert, in a fixed row order so that two writers
never deadlock) and reads back everyone's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiosqlite
import msgspec

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


class UsageRecord(msgspec.Struct, frozen=True):
    """One request served: what it cost and who served it (``at``: Unix time)."""

    at: float
    provider: str
    model: str
    capability: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class SpendGroup(msgspec.Struct, frozen=True):
    """Requests, tokens and USD of one (provider, model, capability) over a window."""

    provider: str
    model: str
    capability: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


class SpendStore(Protocol):
    async def open(self) -> None:
        """Connect and create the tables if needed."""
        ...

    async def append(self, records: Sequence[UsageRecord]) -> None:
        """Add the records and their days' totals, all or nothing."""
        ...

    async def spent_on(self, day: date) -> dict[str, float]:
        """Each provider's spend on a UTC day, by every router writing to this database."""
        ...

    async def spend_since(self, since: float) -> list[SpendGroup]:
        """Spend of the records at or after ``since`` (Unix time), grouped."""
        ...

    async def prune(self, before: float) -> None:
        """Forget records (and days' totals) older than ``before`` (Unix time)."""
        ...

    async def close(self) -> None: ...


def _day_totals(records: Sequence[UsageRecord]) -> list[tuple[date, str, float]]:
    """The records' spend per (day, provider), in a fixed order (so writers never deadlock)."""
    totals: dict[tuple[date, str], float] = defaultdict(float)
    for record in records:
        totals[utc_day(record.at), record.provider] += record.cost_usd
    return [(day, provider, cost) for (day, provider), cost in sorted(totals.items())]


def _rows(records: Sequence[UsageRecord]) -> list[tuple[Any, ...]]:
    return [
        (r.at, r.provider, r.model, r.capability, r.prompt_tokens, r.completion_tokens, r.cost_usd)
        for r in records
    ]


_GROUPED = (
    "SELECT provider, model, capability, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
    "SUM(cost_usd) FROM pas_router_spend WHERE at >= {} GROUP BY provider, model, capability"
)


def _group(row: Sequence[Any]) -> SpendGroup:
    provider, model, capability, requests, prompt, completion, cost = row
    return SpendGroup(
        str(provider),
        str(model),
        str(capability),
        int(requests),
        int(prompt),
        int(completion),
        float(cost),
    )


class SQLiteSpendStore:
    """The default store: one SQLite file in WAL mode, which router processes may share."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: aiosqlite.Connection | None = None

    @property
    def _db(self) -> aiosqlite.Connection:
        assert self._connection is not None, "SQLiteSpendStore.open() was not awaited"
        return self._connection

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit; transactions are begun explicitly (IMMEDIATE: the write lock up front).
        self._connection = db = await aiosqlite.connect(self._path, isolation_level=None)
        await db.execute("PRAGMA busy_timeout=10000")  # another router may be writing
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS pas_router_spend (at REAL NOT NULL, "
            "provider TEXT NOT NULL, model TEXT NOT NULL, capability TEXT NOT NULL, "
            "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
            "cost_usd REAL NOT NULL)"
        )
        await db.execute("CREATE INDEX IF NOT EXISTS pas_router_spend_at ON pas_router_spend (at)")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS pas_router_daily_spend (day TEXT NOT NULL, "
            "provider TEXT NOT NULL, cost_usd REAL NOT NULL, PRIMARY KEY (day, provider))"
        )

    async def append(self, records: Sequence[UsageRecord]) -> None:
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany(
                "INSERT INTO pas_router_spend (at, provider, model, capability, prompt_tokens, "
                "completion_tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?)",
                _rows(records),
            )
            await db.executemany(
                "INSERT INTO pas_router_daily_spend (day, provider, cost_usd) VALUES (?, ?, ?) "
                "ON CONFLICT (day, provider) "
                "DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd",
                [(day.isoformat(), provider, cost) for day, provider, cost in _day_totals(records)],
            )
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")

    async def spent_on(self, day: date) -> dict[str, float]:
        async with self._db.execute(
            "SELECT provider, cost_usd FROM pas_router_daily_spend WHERE day = ?",
            (day.isoformat(),),
        ) as cursor:
            return {str(row[0]): float(row[1]) async for row in cursor}

    async def spend_since(self, since: float) -> list[SpendGroup]:
        async with self._db.execute(_GROUPED.format("?"), (since,)) as cursor:
            return [_group(row) async for row in cursor]

    async def prune(self, before: float) -> None:
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute("DELETE FROM pas_router_spend WHERE at < ?", (before,))
            await db.execute(
                "DELETE FROM pas_router_daily_spend WHERE day < ?",
                (utc_day(before).isoformat(),),
            )
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")

    async def close(self) -> None:
        await self._db.close()


class PostgresSpendStore:
    """For routers on several hosts sharing budgets, or next to an existing PostgreSQL.

    psycopg 3 (async) with its connection pool, from the ``postgres`` extra.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool_or_none: AsyncConnectionPool | None = None

    @property
    def _pool(self) -> AsyncConnectionPool:
        assert self._pool_or_none is not None, "PostgresSpendStore.open() was not awaited"
        return self._pool_or_none

    async def open(self) -> None:
        from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415  (optional extra)

        pool = AsyncConnectionPool(self._dsn, min_size=1, max_size=4, open=False)
        await pool.open(wait=True, timeout=15.0)
        self._pool_or_none = pool
        async with pool.connection() as conn, conn.transaction():
            # Routers starting together would race on CREATE TABLE IF NOT EXISTS.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('pas_router_schema'))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS pas_router_spend (at DOUBLE PRECISION NOT NULL, "
                "provider TEXT NOT NULL, model TEXT NOT NULL, capability TEXT NOT NULL, "
                "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
                "cost_usd DOUBLE PRECISION NOT NULL)"
            )
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS pas_router_spend_at ON pas_router_spend (at)"
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS pas_router_daily_spend (day DATE NOT NULL, "
                "provider TEXT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (day, provider))"
            )

    async def append(self, records: Sequence[UsageRecord]) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO pas_router_spend (at, provider, model, capability, prompt_tokens, "
                "completion_tokens, cost_usd) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                _rows(records),
            )
            await cur.executemany(
                "INSERT INTO pas_router_daily_spend (day, provider, cost_usd) "
                "VALUES (%s, %s, %s) ON CONFLICT (day, provider) "
                "DO UPDATE SET cost_usd = pas_router_daily_spend.cost_usd + excluded.cost_usd",
                _day_totals(records),
            )

    async def spent_on(self, day: date) -> dict[str, float]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT provider, cost_usd FROM pas_router_daily_spend WHERE day = %s", (day,)
            )
            return {str(row[0]): float(row[1]) for row in await cursor.fetchall()}

    async def spend_since(self, since: float) -> list[SpendGroup]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_GROUPED.format("%s"), (since,))
            return [_group(row) for row in await cursor.fetchall()]

    async def prune(self, before: float) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM pas_router_spend WHERE at < %s", (before,))
            await conn.execute(
                "DELETE FROM pas_router_daily_spend WHERE day < %s", (utc_day(before),)
            )

    async def close(self) -> None:
        await self._pool.close()


def store_for_url(database_url: str) -> SpendStore:
    """The store a database URL names: ``sqlite:///path`` or ``postgresql://...`` (not opened)."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        return SQLiteSpendStore(database_url.removeprefix("sqlite:///"))
    if scheme in {"postgres", "postgresql"}:
        return PostgresSpendStore(database_url)
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
    )
