"""The runner's durable parts, chosen by configuration: LangGraph checkpoints and run records in
SQLite files (default) or both in PostgreSQL (``RUNNER_CHECKPOINT_DSN``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from services.langgraph_runner.postgres_store import PostgresRunStore
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.store import RunStore, SQLiteRunStore

Persistence = tuple[BaseCheckpointSaver[str], RunStore]


@asynccontextmanager
async def open_persistence(settings: RunnerSettings) -> AsyncIterator[Persistence]:
    """Open the checkpointer and the run store (tables created if needed); close on exit."""
    if settings.checkpoint_dsn:
        async with _postgres(settings.checkpoint_dsn, settings) as opened:
            yield opened
        return
    async with _sqlite(settings.checkpoint_path, settings.store_path, settings) as opened:
        yield opened


@asynccontextmanager
async def _sqlite(
    checkpoint_path: str, store_path: str, settings: RunnerSettings
) -> AsyncIterator[Persistence]:
    if checkpoint_path != ":memory:":
        Path(checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(checkpoint_path) as conn:
        # WAL with synchronous=NORMAL: a commit survives the process dying (what recovery
        # needs); only losing power may drop the last few.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        store = SQLiteRunStore(store_path, lease_ttl_s=settings.lease_ttl_s)
        await store.open()
        try:
            yield saver, store
        finally:
            await store.close()


@asynccontextmanager
async def _postgres(dsn: str, settings: RunnerSettings) -> AsyncIterator[Persistence]:
    # Optional extra (pas[postgres]): imported only when a DSN is configured.
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver  # noqa: PLC0415
    from psycopg.rows import dict_row  # noqa: PLC0415
    from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

    async with AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=settings.max_concurrent_runs + 4,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    ) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        store = PostgresRunStore(pool, lease_ttl_s=settings.lease_ttl_s)
        await store.open()
        yield saver, store
