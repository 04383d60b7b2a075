"""Where the catalog survives restarts: one small protocol, SQLite and PostgreSQL backends.

The catalog lives in memory for fast discovery; the store is written through on every change
that matters after a restart (registration, status change, removal) and read once at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiosqlite
import msgspec
import structlog

from libs.common.schemas.agents import RegisteredAgent
from libs.common.settings import require_postgres_extra
from libs.common.sqlite_writes import WriteTransactions

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

logger = structlog.get_logger("pas.registry.store")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(RegisteredAgent).decode


def _decode_stored(records: Iterable[tuple[str, str | bytes]]) -> list[RegisteredAgent]:
    """The stored agents that still fit today's ``AgentDefinition``. One registered before a
    rule tightened (an id ending in a newline, an endpoint httpx cannot call) is left out with
    an error in the log instead of keeping the registry from starting; it can register again."""
    agents = []
    for agent_id, record in records:
        try:
            agents.append(_decode(record))
        except msgspec.ValidationError as exc:
            logger.error(  # noqa: TRY400  (the reason is the message; no traceback)
                "a stored agent no longer fits the schema; left out of the catalog",
                agent_id=agent_id,
                error=str(exc),
            )
    return agents


class AgentStore(Protocol):
    async def open(self) -> None:
        """Connect and create the tables if needed."""
        ...

    async def load(self) -> tuple[list[RegisteredAgent], int]:
        """Every stored agent, and the catalog index they were saved at."""
        ...

    async def save(self, agent: RegisteredAgent, index: int) -> None: ...

    async def delete(self, agent_id: str, index: int) -> None: ...

    async def close(self) -> None: ...


class SQLiteAgentStore:
    """The default store: one SQLite file in WAL mode."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: aiosqlite.Connection | None = None
        self._writes = WriteTransactions()

    @property
    def _db(self) -> aiosqlite.Connection:
        assert self._connection is not None, "SQLiteAgentStore.open() was not awaited"
        return self._connection

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._connection = db = await aiosqlite.connect(self._path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS agents (agent_id TEXT PRIMARY KEY, record BLOB NOT NULL)"
        )
        await db.execute(
            "CREATE TABLE IF NOT EXISTS catalog_index (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "value INTEGER NOT NULL)"
        )
        await db.commit()

    async def load(self) -> tuple[list[RegisteredAgent], int]:
        async with self._db.execute(
            "SELECT agent_id, record FROM agents ORDER BY agent_id"
        ) as cursor:
            agents = _decode_stored([(row[0], row[1]) async for row in cursor])
        async with self._db.execute("SELECT value FROM catalog_index WHERE id = 1") as cursor:
            row = await cursor.fetchone()
        return agents, int(row[0]) if row else 0

    async def save(self, agent: RegisteredAgent, index: int) -> None:
        async with self._writes.write(self._db) as db:
            await db.execute(
                "INSERT INTO agents (agent_id, record) VALUES (?, ?) "
                "ON CONFLICT (agent_id) DO UPDATE SET record = excluded.record",
                (agent.agent_id, _encode(agent)),
            )
            await self._set_index(db, index)

    async def delete(self, agent_id: str, index: int) -> None:
        async with self._writes.write(self._db) as db:
            await db.execute("DELETE FROM agents WHERE agent_id = ?", (agent_id,))
            await self._set_index(db, index)

    @staticmethod
    async def _set_index(db: aiosqlite.Connection, index: int) -> None:
        await db.execute(
            "INSERT INTO catalog_index (id, value) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET value = excluded.value",
            (index,),
        )

    async def close(self) -> None:
        await self._db.close()


class PostgresAgentStore:
    """For registries shared by many hosts, or run next to an existing PostgreSQL (psycopg 3,
    optional extra ``pas[postgres]``, imported only when a PostgreSQL URL is configured)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]] | None = None

    @property
    def _db(self) -> AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]:
        assert self._pool is not None, "PostgresAgentStore.open() was not awaited"
        return self._pool

    async def open(self) -> None:
        from psycopg import AsyncConnection  # noqa: PLC0415  (optional extra)
        from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

        # One plain connection first: a wrong URL or a server that is down fails here at once
        # with libpq's own message, not after the pool has retried for its timeout.
        async with await AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS pas_registry_agents "
                "(agent_id TEXT PRIMARY KEY, record JSONB NOT NULL)"
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS pas_registry_index "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL)"
            )
        pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            self._dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
        )
        await pool.open(wait=True)
        self._pool = pool

    async def load(self) -> tuple[list[RegisteredAgent], int]:
        async with self._db.connection() as conn:
            agents = await conn.execute(
                "SELECT agent_id, record::text FROM pas_registry_agents ORDER BY agent_id"
            )
            records = await agents.fetchall()
            stored = await conn.execute("SELECT value FROM pas_registry_index WHERE id = 1")
            index = await stored.fetchone()
        return _decode_stored((row[0], row[1]) for row in records), int(index[0]) if index else 0

    async def save(self, agent: RegisteredAgent, index: int) -> None:
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO pas_registry_agents (agent_id, record) VALUES (%s, %s::jsonb) "
                "ON CONFLICT (agent_id) DO UPDATE SET record = excluded.record",
                (agent.agent_id, _encode(agent).decode()),
            )
            await self._set_index(conn, index)

    async def delete(self, agent_id: str, index: int) -> None:
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM pas_registry_agents WHERE agent_id = %s", (agent_id,))
            await self._set_index(conn, index)

    @staticmethod
    async def _set_index(conn: AsyncConnection[tuple[Any, ...]], index: int) -> None:
        await conn.execute(
            "INSERT INTO pas_registry_index (id, value) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET value = excluded.value",
            (index,),
        )

    async def close(self) -> None:
        await self._db.close()


def store_for_url(database_url: str, *, variable: str) -> AgentStore:
    """The store a database URL names: ``sqlite:///path`` or ``postgresql://...`` (not opened);
    ``variable``: the setting that gave the URL, named if its store cannot be had."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        return SQLiteAgentStore(database_url.removeprefix("sqlite:///"))
    if scheme in {"postgres", "postgresql"}:
        require_postgres_extra(variable)
        return PostgresAgentStore(database_url)
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
    )
