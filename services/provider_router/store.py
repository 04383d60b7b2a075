"""Where spend survives restarts and is shared, and routers share their pace: one small
protocol, SQLite and PostgreSQL.

Three tables for spend: every request's spend (``pas_router_spend``, for ``GET /costs``), and
each provider's and each desk key's total per UTC day (``pas_router_daily_spend``,
``pas_router_key_daily_spend``, for the daily budgets), written together in one transaction so
that they always agree. Several routers may share one database: each adds to the day's totals
(an upsert, in a fixed row order so that two writers never deadlock) and reads back
everyone's. Two for pace (``shared_pace.py``): each router's calls per candidate and second of
the last minutes (``pas_router_pace``), and the latest pause a provider asked for per
candidate (``pas_router_pause``). The rows and the SQL are in ``store_rows.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import aiosqlite

from libs.common.settings import require_postgres_extra
from libs.common.sqlite_writes import WriteTransactions
from services.provider_router.rate_limits import PaceSecond, Pause
from services.provider_router.store_rows import (
    ADD_KEY_DAY,
    ADD_PACE,
    ADD_PAUSE,
    GROUPED,
    INSERT_SPEND,
    OTHERS_PACE,
    PACE_TABLES,
    PAUSES,
    SpendGroup,
    UsageRecord,
    day_totals,
    group,
    others,
    pace_rows,
    pause_rows,
    spend_rows,
    utc_day,
)

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


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


class SQLiteSpendStore:
    """The default store: one SQLite file in WAL mode, which router processes may share."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: aiosqlite.Connection | None = None
        self._writes = WriteTransactions()
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
        self._writes = WriteTransactions()  # its lock in the loop that serves
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
        for statement in PACE_TABLES:
            await db.execute(statement)

    async def append(self, records: Sequence[UsageRecord]) -> None:
        async with self._writes.write(self._db) as db:
            await db.executemany(INSERT_SPEND.format("?"), spend_rows(records))
            await db.executemany(
                "INSERT INTO pas_router_daily_spend (day, provider, cost_usd) VALUES (?, ?, ?) "
                "ON CONFLICT (day, provider) "
                "DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd",
                [(day.isoformat(), provider, cost) for day, provider, cost in day_totals(records)],
            )
            await db.executemany(
                ADD_KEY_DAY.format("?"),
                [(day.isoformat(), key, cost) for day, key, cost in day_totals(records, "key")],
            )

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
        async with self._db.execute(GROUPED.format("?"), (since,)) as cursor:
            return [group(row) async for row in cursor]

    async def prune(self, before: float) -> None:
        async with self._writes.write(self._db) as db:
            await db.execute("DELETE FROM pas_router_spend WHERE at < ?", (before,))
            for table in ("pas_router_daily_spend", "pas_router_key_daily_spend"):
                await db.execute(
                    f"DELETE FROM {table} WHERE day < ?",  # noqa: S608  (names of our own)
                    (utc_day(before).isoformat(),),
                )

    async def share_pace(
        self, router: str, seconds: Sequence[PaceSecond], pauses: Sequence[Pause], before: int
    ) -> None:
        async with self._writes.write(self._db) as db:
            await db.executemany(ADD_PACE.format("?"), pace_rows(router, seconds))
            await db.executemany(ADD_PAUSE.format("?"), pause_rows(pauses))
            await db.execute("DELETE FROM pas_router_pace WHERE at_second < ?", (before,))

    async def others_pace(
        self, router: str, since: int, now: float
    ) -> tuple[dict[str, tuple[int, int]], list[Pause]]:
        async with self._db.execute(OTHERS_PACE.format("?"), (since, router)) as cursor:
            paced = [tuple(row) async for row in cursor]
        async with self._db.execute(PAUSES.format("?"), (now,)) as cursor:
            paused = [tuple(row) async for row in cursor]
        return others(paced, paused)

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
            for statement in PACE_TABLES:
                await conn.execute(statement)

    async def append(self, records: Sequence[UsageRecord]) -> None:
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(INSERT_SPEND.format("%s"), spend_rows(records))
            await cur.executemany(
                "INSERT INTO pas_router_daily_spend (day, provider, cost_usd) "
                "VALUES (%s, %s, %s) ON CONFLICT (day, provider) "
                "DO UPDATE SET cost_usd = pas_router_daily_spend.cost_usd + excluded.cost_usd",
                day_totals(records),
            )
            await cur.executemany(ADD_KEY_DAY.format("%s"), day_totals(records, "key"))

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
            cursor = await conn.execute(GROUPED.format("%s"), (since,))
            return [group(row) for row in await cursor.fetchall()]

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
            await cur.executemany(ADD_PACE.format("%s"), pace_rows(router, seconds))
            await cur.executemany(ADD_PAUSE.format("%s"), pause_rows(pauses))
            await cur.execute("DELETE FROM pas_router_pace WHERE at_second < %s", (before,))

    async def others_pace(
        self, router: str, since: int, now: float
    ) -> tuple[dict[str, tuple[int, int]], list[Pause]]:
        async with self._pool.connection() as conn:
            paced = await (await conn.execute(OTHERS_PACE.format("%s"), (since, router))).fetchall()
            paused = await (await conn.execute(PAUSES.format("%s"), (now,))).fetchall()
        return others(paced, paused)

    async def close(self) -> None:
        await self._pool.close()


def store_for_url(database_url: str, *, variable: str) -> SpendStore:
    """The store a database URL names: ``sqlite:///path`` or ``postgresql://...`` (not opened);
    ``variable``: the setting that gave the URL, named if its store cannot be had."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        return SQLiteSpendStore(database_url.removeprefix("sqlite:///"))
    if scheme in {"postgres", "postgresql"}:
        require_postgres_extra(variable)
        return PostgresSpendStore(database_url)
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
    )
