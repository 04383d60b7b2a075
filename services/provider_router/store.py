"""Where spend survives restarts and is shared, and routers share their pace: one small
protocol, SQLite and PostgreSQL.

Three tables for spend: every request's spend (``pas_router_spend``, for ``GET /costs``), and
each provider's and each desk key's total per UTC day (``pas_router_daily_spend``,
``pas_router_key_daily_spend``, for the daily budgets), written together in one transaction so
that they always agree. Several routers may share one
database: each adds to the day's totals (an upsert, in a fixed row order so that two writers
never deadlock) and reads back everyone's. Two for pace (``shared_pace.py``): each router's
calls per candidate and second of the last minutes (``pas_router_pace``), and the latest pause
a provider asked for per candidate (``pas_router_pause``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiosqlite
import msgspec

from services.provider_router.rate_limits import PaceSecond, Pause

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
    key: str = ""
    """The desk key that sent it (``desk_keys.py``); empty for the router's own token."""


class SpendGroup(msgspec.Struct, frozen=True):
    """Requests, tokens and USD of one (provider, model, capability, key) over a window."""

    provider: str
    model: str
    capability: str
    key: str
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

    async def keys_spent_on(self, day: date) -> dict[str, float]:
        """Each desk key's spend on a UTC day, by every router writing to this database."""
        ...

    async def spend_since(self, since: float) -> list[SpendGroup]:
        """Spend of the records at or after ``since`` (Unix time), grouped."""
        ...

    async def prune(self, before: float) -> None:
        """Forget records (and days' totals) older than ``before`` (Unix time)."""
        ...

    async def share_pace(
        self, router: str, seconds: Sequence[PaceSecond], pauses: Sequence[Pause], before: int
    ) -> None:
        """Add a router's calls per candidate and second, keep the later of each candidate's
        pauses, and forget every router's calls in seconds before ``before``; all or nothing."""
        ...

    async def others_pace(
        self, router: str, since: int, now: float
    ) -> tuple[dict[str, tuple[int, int]], list[Pause]]:
        """The other routers' requests and tokens per candidate from second ``since`` on, and
        the pauses (any router's) that last past ``now``."""
        ...

    async def close(self) -> None: ...


def _day_totals(
    records: Sequence[UsageRecord], payer: str = "provider"
) -> list[tuple[date, str, float]]:
    """The records' spend per (day, provider), or per (day, desk key) of those a key sent,
    in a fixed order (so writers never deadlock)."""
    totals: dict[tuple[date, str], float] = defaultdict(float)
    for record in records:
        if name := getattr(record, payer):
            totals[utc_day(record.at), name] += record.cost_usd
    return [(day, name, cost) for (day, name), cost in sorted(totals.items())]


def _rows(records: Sequence[UsageRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            r.at,
            r.provider,
            r.model,
            r.capability,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_usd,
            r.key,
        )
        for r in records
    ]


_INSERT_SPEND = (
    "INSERT INTO pas_router_spend (at, provider, model, capability, prompt_tokens, "
    "completion_tokens, cost_usd, desk_key) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})"
)
_ADD_KEY_DAY = (
    "INSERT INTO pas_router_key_daily_spend (day, desk_key, cost_usd) VALUES ({0}, {0}, {0}) "
    "ON CONFLICT (day, desk_key) "
    "DO UPDATE SET cost_usd = pas_router_key_daily_spend.cost_usd + excluded.cost_usd"
)
_GROUPED = (
    "SELECT provider, model, capability, desk_key, COUNT(*), SUM(prompt_tokens), "
    "SUM(completion_tokens), SUM(cost_usd) FROM pas_router_spend WHERE at >= {} "
    "GROUP BY provider, model, capability, desk_key"
)


def _group(row: Sequence[Any]) -> SpendGroup:
    provider, model, capability, key, requests, prompt, completion, cost = row
    return SpendGroup(
        str(provider),
        str(model),
        str(capability),
        str(key),
        int(requests),
        int(prompt),
        int(completion),
        float(cost),
    )


def _pace_rows(router: str, seconds: Sequence[PaceSecond]) -> list[tuple[Any, ...]]:
    """In a fixed order, so two writers never deadlock."""
    ordered = sorted(seconds, key=lambda s: (s.candidate, s.second))
    return [(router, s.candidate, s.second, s.requests, s.tokens) for s in ordered]


def _pause_rows(pauses: Sequence[Pause]) -> list[tuple[Any, ...]]:
    return [(p.candidate, p.until, p.reason) for p in sorted(pauses, key=lambda p: p.candidate)]


_PACE_TABLES = (
    "CREATE TABLE IF NOT EXISTS pas_router_pace (router TEXT NOT NULL, candidate TEXT NOT NULL, "
    "at_second BIGINT NOT NULL, requests INTEGER NOT NULL, tokens BIGINT NOT NULL, "
    "PRIMARY KEY (router, candidate, at_second))",
    "CREATE INDEX IF NOT EXISTS pas_router_pace_second ON pas_router_pace (at_second)",
    "CREATE TABLE IF NOT EXISTS pas_router_pause (candidate TEXT PRIMARY KEY, "
    "ends_at DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL)",
)
_ADD_PACE = (
    "INSERT INTO pas_router_pace (router, candidate, at_second, requests, tokens) "
    "VALUES ({0}, {0}, {0}, {0}, {0}) ON CONFLICT (router, candidate, at_second) DO UPDATE SET "
    "requests = pas_router_pace.requests + excluded.requests, "
    "tokens = pas_router_pace.tokens + excluded.tokens"
)
_ADD_PAUSE = (
    "INSERT INTO pas_router_pause (candidate, ends_at, reason) VALUES ({0}, {0}, {0}) "
    "ON CONFLICT (candidate) DO UPDATE SET ends_at = excluded.ends_at, reason = excluded.reason "
    "WHERE excluded.ends_at > pas_router_pause.ends_at"
)
_OTHERS_PACE = (
    "SELECT candidate, SUM(requests), SUM(tokens) FROM pas_router_pace "
    "WHERE at_second >= {0} AND router <> {0} GROUP BY candidate"
)
_PAUSES = "SELECT candidate, ends_at, reason FROM pas_router_pause WHERE ends_at > {0}"


def _others(
    paced: Sequence[Sequence[Any]], paused: Sequence[Sequence[Any]]
) -> tuple[dict[str, tuple[int, int]], list[Pause]]:
    return (
        {str(c): (int(r), int(t)) for c, r, t in paced},
        [Pause(str(c), float(u), str(why)) for c, u, why in paused],
    )


class SQLiteSpendStore:
    """The default store: one SQLite file in WAL mode, which router processes may share."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: aiosqlite.Connection | None = None
        self._transaction = asyncio.Lock()
        """One transaction at a time on the one connection (spend and pace write apart)."""

    @property
    def _db(self) -> aiosqlite.Connection:
        assert self._connection is not None, "SQLiteSpendStore.open() was not awaited"
        return self._connection

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit; transactions are begun explicitly (IMMEDIATE: the write lock up front).
        self._connection = db = await aiosqlite.connect(self._path, isolation_level=None)
        self._transaction = asyncio.Lock()  # in the loop that serves
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
        async with db.execute("PRAGMA table_info(pas_router_spend)") as cursor:
            columns = {str(row[1]) async for row in cursor}
        if "desk_key" not in columns:  # a database from before desk keys
            await db.execute(
                "ALTER TABLE pas_router_spend ADD COLUMN desk_key TEXT NOT NULL DEFAULT ''"
            )
        await db.execute(
            "CREATE TABLE IF NOT EXISTS pas_router_daily_spend (day TEXT NOT NULL, "
            "provider TEXT NOT NULL, cost_usd REAL NOT NULL, PRIMARY KEY (day, provider))"
        )
        await db.execute(
            "CREATE TABLE IF NOT EXISTS pas_router_key_daily_spend (day TEXT NOT NULL, "
            "desk_key TEXT NOT NULL, cost_usd REAL NOT NULL, PRIMARY KEY (day, desk_key))"
        )
        for statement in _PACE_TABLES:
            await db.execute(statement)

    async def append(self, records: Sequence[UsageRecord]) -> None:
        async with self._transaction:
            await self._append(records)

    async def _append(self, records: Sequence[UsageRecord]) -> None:
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany(_INSERT_SPEND.format("?"), _rows(records))
            await db.executemany(
                "INSERT INTO pas_router_daily_spend (day, provider, cost_usd) VALUES (?, ?, ?) "
                "ON CONFLICT (day, provider) "
                "DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd",
                [(day.isoformat(), provider, cost) for day, provider, cost in _day_totals(records)],
            )
            await db.executemany(
                _ADD_KEY_DAY.format("?"),
                [(day.isoformat(), key, cost) for day, key, cost in _day_totals(records, "key")],
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

    async def keys_spent_on(self, day: date) -> dict[str, float]:
        async with self._db.execute(
            "SELECT desk_key, cost_usd FROM pas_router_key_daily_spend WHERE day = ?",
            (day.isoformat(),),
        ) as cursor:
            return {str(row[0]): float(row[1]) async for row in cursor}

    async def spend_since(self, since: float) -> list[SpendGroup]:
        async with self._db.execute(_GROUPED.format("?"), (since,)) as cursor:
            return [_group(row) async for row in cursor]

    async def prune(self, before: float) -> None:
        async with self._transaction:
            await self._prune(before)

    async def _prune(self, before: float) -> None:
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute("DELETE FROM pas_router_spend WHERE at < ?", (before,))
            for table in ("pas_router_daily_spend", "pas_router_key_daily_spend"):
                await db.execute(
                    f"DELETE FROM {table} WHERE day < ?",  # noqa: S608  (names of our own)
                    (utc_day(before).isoformat(),),
                )
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")

    async def share_pace(
        self, router: str, seconds: Sequence[PaceSecond], pauses: Sequence[Pause], before: int
    ) -> None:
        async with self._transaction:
            db = self._db
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(_ADD_PACE.format("?"), _pace_rows(router, seconds))
                await db.executemany(_ADD_PAUSE.format("?"), _pause_rows(pauses))
                await db.execute("DELETE FROM pas_router_pace WHERE at_second < ?", (before,))
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def others_pace(
        self, router: str, since: int, now: float
    ) -> tuple[dict[str, tuple[int, int]], list[Pause]]:
        async with self._db.execute(_OTHERS_PACE.format("?"), (since, router)) as cursor:
            paced = [tuple(row) async for row in cursor]
        async with self._db.execute(_PAUSES.format("?"), (now,)) as cursor:
            paused = [tuple(row) async for row in cursor]
        return _others(paced, paused)

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
            await conn.execute(  # a database from before desk keys
                "ALTER TABLE pas_router_spend ADD COLUMN IF NOT EXISTS desk_key TEXT NOT NULL "
                "DEFAULT ''"
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS pas_router_daily_spend (day DATE NOT NULL, "
                "provider TEXT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (day, provider))"
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS pas_router_key_daily_spend (day DATE NOT NULL, "
                "desk_key TEXT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (day, desk_key))"
            )
            for statement in _PACE_TABLES:
                await conn.execute(statement)

    async def append(self, records: Sequence[UsageRecord]) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_INSERT_SPEND.format("%s"), _rows(records))
            await cur.executemany(
                "INSERT INTO pas_router_daily_spend (day, provider, cost_usd) "
                "VALUES (%s, %s, %s) ON CONFLICT (day, provider) "
                "DO UPDATE SET cost_usd = pas_router_daily_spend.cost_usd + excluded.cost_usd",
                _day_totals(records),
            )
            await cur.executemany(_ADD_KEY_DAY.format("%s"), _day_totals(records, "key"))

    async def spent_on(self, day: date) -> dict[str, float]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT provider, cost_usd FROM pas_router_daily_spend WHERE day = %s", (day,)
            )
            return {str(row[0]): float(row[1]) for row in await cursor.fetchall()}

    async def keys_spent_on(self, day: date) -> dict[str, float]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT desk_key, cost_usd FROM pas_router_key_daily_spend WHERE day = %s", (day,)
            )
            return {str(row[0]): float(row[1]) for row in await cursor.fetchall()}

    async def spend_since(self, since: float) -> list[SpendGroup]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_GROUPED.format("%s"), (since,))
            return [_group(row) for row in await cursor.fetchall()]

    async def prune(self, before: float) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM pas_router_spend WHERE at < %s", (before,))
            for table in ("pas_router_daily_spend", "pas_router_key_daily_spend"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE day < %s",  # noqa: S608  (names of our own)
                    (utc_day(before),),
                )

    async def share_pace(
        self, router: str, seconds: Sequence[PaceSecond], pauses: Sequence[Pause], before: int
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_ADD_PACE.format("%s"), _pace_rows(router, seconds))
            await cur.executemany(_ADD_PAUSE.format("%s"), _pause_rows(pauses))
            await cur.execute("DELETE FROM pas_router_pace WHERE at_second < %s", (before,))

    async def others_pace(
        self, router: str, since: int, now: float
    ) -> tuple[dict[str, tuple[int, int]], list[Pause]]:
        async with self._pool.connection() as conn:
            paced = await (
                await conn.execute(_OTHERS_PACE.format("%s"), (since, router))
            ).fetchall()
            paused = await (await conn.execute(_PAUSES.format("%s"), (now,))).fetchall()
        return _others(paced, paused)

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
