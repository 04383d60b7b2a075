"""The store at scale: PostgreSQL, with TimescaleDB when the server has it.

Same tables, keys and queries as the DuckDB store (``queries.py``); the tables, views and their
migrations from older layouts are ``postgres_schema.py``'s, made when the store opens.

The driver is psycopg 3 (optional extra ``pas[postgres]``, the one the LangGraph checkpointer
uses too). Its raw cursors take the ``$1`` placeholders that ``queries.py`` shares with DuckDB.
A batch of events is loaded with ``COPY`` (binary) into a temporary table of the connection,
then moved into the real table in the same transaction, skipping the rows already stored.
"""

# ruff: noqa: S608  (SQL is assembled from fixed table names only; values are bound parameters)

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Final

import pyarrow as pa
import structlog
from psycopg import AsyncConnection, AsyncRawCursor, AsyncRawServerCursor
from psycopg_pool import AsyncConnectionPool

from libs.common.schemas.usage import (
    Bucket,
    CostLine,
    GroupBy,
    ModelStats,
    QualityScore,
    RollupResult,
    ScoreLine,
    TrendMetric,
    TrendPoint,
    UsageEvent,
    WorkflowRun,
    WorkflowStats,
)
from services.analytics import queries, results
from services.analytics.batches import (
    new_runs,
    new_usage,
    run_columns,
    score_columns,
    usage_columns,
)
from services.analytics.exports import ParquetSpool, csv_header, format_rows, stream_file
from services.analytics.postgres_schema import (
    HOURLY_USAGE_DIGEST_KEY,
    Connection,
    set_up_schema,
)
from services.analytics.queries import (
    EXPORT_COLUMNS,
    EXPORTS,
    RUN_COLUMNS,
    RUNS,
    USAGE,
    USAGE_COLUMNS,
)
from services.analytics.store import ExportFormat, ExportKind, TimeWindow, TrendFilter
from services.analytics.usage_table import TIMESTAMP, USAGE_FIELDS, usage_events, usage_table

logger = structlog.get_logger("pas.analytics.postgres")

_ROLL_UP_USAGE: Final = queries.roll_up_usage(HOURLY_USAGE_DIGEST_KEY)

# --- ingest: COPY into a temporary table per connection, then one INSERT ... SELECT ----------

USAGE_BATCH: Final = "pas_analytics_usage_batch"
RUNS_BATCH: Final = "pas_analytics_runs_batch"
# Column types in the order of queries.USAGE_COLUMNS / RUN_COLUMNS, as binary COPY sends them;
# the usage columns' from their Arrow types (usage_table.USAGE_FIELDS), which follow that order.
_POSTGRES_TYPES: Final = {
    pa.string(): "text",
    TIMESTAMP: "timestamptz",
    pa.int32(): "int4",
    pa.float64(): "float8",
}
_USAGE_TYPES: Final = tuple(_POSTGRES_TYPES[kind] for _, _, kind in USAGE_FIELDS)
_RUN_TYPES: Final = ("text", "text", "timestamptz", "text", "float8", "text", "text")


def _batch_table(name: str, columns: Sequence[str], types: Sequence[str]) -> str:
    """A temporary table of the connection, emptied at every commit."""
    definition = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=True))
    return f"CREATE TEMP TABLE IF NOT EXISTS {name} ({definition}) ON COMMIT DELETE ROWS"


_COPY_USAGE: Final = f"COPY {USAGE_BATCH} ({', '.join(USAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_RUNS: Final = f"COPY {RUNS_BATCH} ({', '.join(RUN_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_MOVE_USAGE: Final = f"""
INSERT INTO {USAGE} ({", ".join(USAGE_COLUMNS)})
SELECT {", ".join(USAGE_COLUMNS)} FROM {USAGE_BATCH}
ON CONFLICT DO NOTHING
RETURNING event_id, ts"""
# The same rule as queries.DELETE_SUPERSEDED_RUNS and INSERT_RUNS: a run counts once, with its
# latest outcome; a newer outcome replaces the stored one, an older or repeated one is dropped.
_DELETE_SUPERSEDED_RUNS: Final = f"""
DELETE FROM {RUNS} WHERE EXISTS (
    SELECT 1 FROM {RUNS_BATCH} batch
    WHERE batch.run_id = {RUNS}.run_id AND {RUNS}.ts < batch.ts
)"""
_MOVE_RUNS: Final = f"""
INSERT INTO {RUNS} ({", ".join(RUN_COLUMNS)})
SELECT {", ".join(RUN_COLUMNS)} FROM {RUNS_BATCH} batch
WHERE NOT EXISTS (
    SELECT 1 FROM {RUNS} stored WHERE stored.run_id = batch.run_id AND stored.ts >= batch.ts
)
ON CONFLICT DO NOTHING
RETURNING run_id"""


async def _prepare_connection(conn: Connection) -> None:
    """Every pooled connection: UTC (hours are UTC hours) and its own batch tables."""
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.execute(_batch_table(USAGE_BATCH, USAGE_COLUMNS, _USAGE_TYPES))
    await conn.execute(_batch_table(RUNS_BATCH, RUN_COLUMNS, _RUN_TYPES))


async def _copy_rows(
    conn: Connection, statement: str, types: Sequence[str], columns: list[list[Any]]
) -> None:
    async with conn.cursor().copy(statement) as copy:
        copy.set_types(list(types))
        for row in zip(*columns, strict=True):
            await copy.write_row(row)


class PostgresStore:
    # Two batches would be written on two connections at once, in no set order: one at a time.
    batches_in_flight = 1
    # COPY takes rows of Python values, which the events give at once.
    reads_usage_tables = False

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: AsyncConnectionPool[Connection] | None = None
        self.kind = "postgres"

    @property
    def _db(self) -> AsyncConnectionPool[Connection]:
        assert self._pool is not None, "PostgresStore.open() was not awaited"
        return self._pool

    async def open(self) -> None:
        # The schema on one plain connection first: a wrong URL or a server that is down fails
        # here at once with libpq's own message, not after the pool has retried for its timeout.
        async with await AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            timescale = await set_up_schema(conn)
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=8,
            kwargs={"autocommit": True, "cursor_factory": AsyncRawCursor},
            configure=_prepare_connection,
            open=False,
        )
        await pool.open(wait=True)
        self._pool = pool
        self.kind = "timescaledb" if timescale else "postgres"
        logger.info("analytics store opened", store=self.kind)

    async def close(self) -> None:
        await self._db.close()

    # -- writes --------------------------------------------------------------------------------

    async def insert_usage(self, usage: Sequence[UsageEvent] | pa.Table) -> pa.Table:
        events = usage_events(usage) if isinstance(usage, pa.Table) else usage
        if not events:
            return usage_table(())
        unique, columns = usage_columns(events)
        async with self._db.connection() as conn, conn.transaction():
            await _copy_rows(conn, _COPY_USAGE, _USAGE_TYPES, columns)
            stored = await (await conn.execute(_MOVE_USAGE)).fetchall()
        return usage_table(new_usage(unique, stored))

    async def insert_runs(self, runs: Sequence[WorkflowRun]) -> list[WorkflowRun]:
        if not runs:
            return []
        unique, columns = run_columns(runs)
        async with self._db.connection() as conn, conn.transaction():
            await _copy_rows(conn, _COPY_RUNS, _RUN_TYPES, columns)
            await conn.execute(_DELETE_SUPERSEDED_RUNS)
            stored = await (await conn.execute(_MOVE_RUNS)).fetchall()
        return new_runs(unique, stored)

    async def insert_scores(self, scores: Sequence[QualityScore]) -> int:
        if not scores:
            return 0
        columns = score_columns(scores)
        async with self._db.connection() as conn:
            await conn.execute(queries.UPSERT_SCORES, columns)
        return len(columns[0])

    async def roll_up(self, cutoff: datetime) -> RollupResult:
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(_ROLL_UP_USAGE, (cutoff,))
            await conn.execute(queries.ROLL_UP_RUNS, (cutoff,))
            usage_rows = (await conn.execute(queries.DELETE_ROLLED_USAGE, (cutoff,))).rowcount
            run_rows = (await conn.execute(queries.DELETE_ROLLED_RUNS, (cutoff,))).rowcount
            await conn.execute(queries.SET_HORIZON, (cutoff,))
        return RollupResult(cutoff=cutoff, usage_rows=usage_rows, run_rows=run_rows)

    # -- queries -------------------------------------------------------------------------------

    async def _read(self, sql: str, *params: Any) -> list[Any]:
        async with self._db.connection() as conn:
            return await (await conn.execute(sql, params)).fetchall()

    async def costs(self, window: TimeWindow, group_by: GroupBy) -> list[CostLine]:
        rows = await self._read(queries.costs(group_by), window.start, window.end)
        return results.cost_lines(rows)

    async def score_stats(self, window: TimeWindow, workflow_id: str | None) -> list[ScoreLine]:
        rows = await self._read(queries.SCORE_STATS, window.start, window.end, workflow_id)
        return results.score_lines(rows)

    async def workflow_stats(self, window: TimeWindow) -> list[WorkflowStats]:
        sql = queries.workflow_stats(queries.POSTGRES)
        return results.workflow_stats(await self._read(sql, window.start, window.end))

    async def model_stats(self, window: TimeWindow) -> list[ModelStats]:
        sql = queries.model_stats(queries.POSTGRES)
        return results.model_stats(await self._read(sql, window.start, window.end))

    async def trend(
        self, metric: TrendMetric, bucket: Bucket, window: TimeWindow, where: TrendFilter
    ) -> list[TrendPoint]:
        sql, extra = queries.trend(
            metric,
            bucket,
            queries.POSTGRES,
            workflow_id=where.workflow_id,
            model=where.model,
            desk=where.desk,
        )
        rows = await self._read(sql, window.start, window.end, *extra)
        return results.trend_points(rows, metric, bucket, window.start, window.end)

    async def success_rates(self, window: TimeWindow) -> dict[str, float]:
        rows = await self._read(queries.success_rates(), window.start, window.end)
        return {workflow: float(rate) for workflow, rate in rows if rate is not None}

    # -- exports -------------------------------------------------------------------------------

    async def export(
        self, kind: ExportKind, fmt: ExportFormat, window: TimeWindow, chunk_rows: int
    ) -> AsyncIterator[bytes]:
        columns = EXPORT_COLUMNS[kind]
        spool = ParquetSpool(kind) if fmt == "parquet" else None
        try:
            async with self._db.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION READ ONLY")
                # A server-side cursor: rows come in pieces, never all at once.
                async with AsyncRawServerCursor(conn, "pas_analytics_export") as cursor:
                    await cursor.execute(EXPORTS[kind], (window.start, window.end))
                    if fmt == "csv":
                        yield csv_header(columns)
                    while rows := await cursor.fetchmany(chunk_rows):
                        if spool is not None:
                            await asyncio.to_thread(spool.append, rows)
                        else:
                            yield format_rows(fmt, columns, rows)
        except BaseException:
            if spool is not None:
                await asyncio.to_thread(spool.discard)
            raise
        if spool is not None:
            async for chunk in stream_file(await asyncio.to_thread(spool.finish)):
                yield chunk
