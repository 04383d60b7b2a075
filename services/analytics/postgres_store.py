"""The store at scale: PostgreSQL, with TimescaleDB when the server has it.

Same tables, keys and queries as the DuckDB store (``queries.py``). With TimescaleDB the raw
tables are hypertables on ``ts`` and a continuous aggregate keeps usage per hour up to date;
without it they are plain tables with a time index. Either way the views
``pas_analytics_usage_by_hour`` and ``pas_analytics_runs_by_hour`` give the whole history per
hour (rolled-up hours and recent ones alike), which is what Grafana's PostgreSQL panels read.

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

import psycopg
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
from services.analytics.queries import (
    ADDED_USAGE_COLUMNS,
    EXPORT_COLUMNS,
    EXPORTS,
    HOURLY_USAGE_KEY,
    META,
    RUN_COLUMNS,
    RUNS,
    RUNS_HOURLY,
    USAGE,
    USAGE_COLUMNS,
    USAGE_HOURLY,
)
from services.analytics.store import ExportFormat, ExportKind, TimeWindow, TrendFilter
from services.analytics.usage_table import TIMESTAMP, USAGE_FIELDS, usage_events, usage_table

logger = structlog.get_logger("pas.analytics.postgres")

USAGE_CAGG = "pas_analytics_usage_hourly_live"
USAGE_BY_HOUR = "pas_analytics_usage_by_hour"
RUNS_BY_HOUR = "pas_analytics_runs_by_hour"

_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {USAGE} (
        event_id TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, service TEXT NOT NULL,
        provider TEXT NOT NULL, model TEXT NOT NULL, capability TEXT, workflow_id TEXT,
        run_id TEXT, request_id TEXT, prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,
        cost_usd NUMERIC(18,10) NOT NULL, status TEXT NOT NULL, error TEXT, desk TEXT,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (event_id, ts))""",
    f"""CREATE TABLE IF NOT EXISTS {RUNS} (
        run_id TEXT NOT NULL, status TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL,
        workflow_id TEXT NOT NULL, duration_ms DOUBLE PRECISION, source TEXT NOT NULL,
        error TEXT,
        PRIMARY KEY (run_id, status, ts))""",
    f"""CREATE TABLE IF NOT EXISTS {USAGE_HOURLY} (
        hour TIMESTAMPTZ NOT NULL, service TEXT NOT NULL, provider TEXT NOT NULL,
        model TEXT NOT NULL, capability TEXT NOT NULL, workflow_id TEXT NOT NULL,
        status TEXT NOT NULL, calls BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL, cost_usd NUMERIC(38,10) NOT NULL,
        latency_ms_sum DOUBLE PRECISION NOT NULL, desk TEXT NOT NULL DEFAULT '',
        cached_tokens BIGINT NOT NULL DEFAULT 0, cache_write_tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY {HOURLY_USAGE_KEY})""",
    f"""CREATE TABLE IF NOT EXISTS {RUNS_HOURLY} (
        hour TIMESTAMPTZ NOT NULL, workflow_id TEXT NOT NULL, status TEXT NOT NULL,
        runs BIGINT NOT NULL, duration_ms_sum DOUBLE PRECISION NOT NULL,
        timed_runs BIGINT NOT NULL,
        PRIMARY KEY (hour, workflow_id, status))""",
    f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TIMESTAMPTZ NOT NULL)",
    queries.scores_table("TEXT", "DOUBLE PRECISION"),
)
# Plain tables only: a hypertable gets its own time index when it is created.
_TIME_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {USAGE}_ts_idx ON {USAGE} (ts DESC)",
    f"CREATE INDEX IF NOT EXISTS {RUNS}_ts_idx ON {RUNS} (ts DESC)",
)

_HORIZON = f"(SELECT coalesce(max(value), '-infinity') FROM {META} WHERE key = 'rolled_up_before')"

_USAGE_HOUR_COLUMNS = """service, provider, model, coalesce(capability, '') AS capability,
    coalesce(workflow_id, '') AS workflow_id, coalesce(desk, '') AS desk, status,
    count(*) AS calls,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
    sum(cost_usd) AS cost_usd, sum(latency_ms) AS latency_ms_sum,
    sum(cached_tokens) AS cached_tokens, sum(cache_write_tokens) AS cache_write_tokens"""

_TIMESCALE = (
    f"SELECT create_hypertable('{USAGE}', 'ts', if_not_exists => TRUE, migrate_data => TRUE)",
    f"SELECT create_hypertable('{RUNS}', 'ts', if_not_exists => TRUE, migrate_data => TRUE)",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {USAGE_CAGG}
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '1 hour', ts) AS hour, {_USAGE_HOUR_COLUMNS}
        FROM {USAGE}
        GROUP BY time_bucket(INTERVAL '1 hour', ts), service, provider, model, capability,
                 workflow_id, desk, status
        WITH NO DATA""",
    f"""SELECT add_continuous_aggregate_policy('{USAGE_CAGG}',
        start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE)""",
)

# The added columns last: a view made before them is replaced by one that only gains columns.
_HOURLY_COLUMNS = (
    "hour, service, provider, model, capability, workflow_id, status, calls, prompt_tokens, "
    "completion_tokens, cost_usd, latency_ms_sum, desk, cached_tokens, cache_write_tokens"
)


def _usage_by_hour_view(recent_source: str) -> str:
    return f"""CREATE OR REPLACE VIEW {USAGE_BY_HOUR} AS
        SELECT {_HOURLY_COLUMNS} FROM {USAGE_HOURLY}
        UNION ALL
        SELECT {_HOURLY_COLUMNS} FROM ({recent_source}) recent WHERE hour >= {_HORIZON}"""


_PLAIN_RECENT_USAGE = (
    f"SELECT date_trunc('hour', ts) AS hour, {_USAGE_HOUR_COLUMNS} FROM {USAGE} "
    "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
)
_RUNS_BY_HOUR_VIEW = f"""CREATE OR REPLACE VIEW {RUNS_BY_HOUR} AS
    SELECT hour, workflow_id, status, runs, duration_ms_sum, timed_runs FROM {RUNS_HOURLY}
    UNION ALL
    SELECT date_trunc('hour', ts), workflow_id, status, count(*), coalesce(sum(duration_ms), 0),
           count(duration_ms)
    FROM {RUNS} GROUP BY 1, 2, 3"""


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

Connection = AsyncConnection[tuple[Any, ...]]


async def _prepare_connection(conn: Connection) -> None:
    """Every pooled connection: UTC (hours are UTC hours) and its own batch tables."""
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.execute(_batch_table(USAGE_BATCH, USAGE_COLUMNS, _USAGE_TYPES))
    await conn.execute(_batch_table(RUNS_BATCH, RUN_COLUMNS, _RUN_TYPES))


async def _has_column(conn: Connection, relation: str, column: str) -> bool | None:
    """Whether ``relation`` (a table or view) has ``column``; None when there is no such
    relation."""
    found = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped)",
        (relation, relation, column),
    )
    exists, has = await found.fetchone() or (False, False)
    return has if exists else None


async def _add_usage_columns(conn: Connection) -> None:
    """A database made before usage had all its columns (``queries.ADDED_USAGE_COLUMNS``):
    each missing one is added to its tables (the desk into the hourly table's key too); a
    continuous aggregate without one, which holds nothing the tables do not, is dropped to be
    made again (``open`` makes it and the view over it)."""
    for table, place in ((USAGE, 1), (USAGE_HOURLY, 2)):
        for added in ADDED_USAGE_COLUMNS:
            column, definition = added[0], added[place]
            if await _has_column(conn, table, column) is not False:
                continue
            async with conn.transaction():
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                if table == USAGE_HOURLY and column == "desk":
                    await conn.execute(
                        f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, "
                        f"ADD PRIMARY KEY {HOURLY_USAGE_KEY}"
                    )
            logger.info("usage table given a new column", table=table, column=column)
    for column, _, _ in ADDED_USAGE_COLUMNS:
        if await _has_column(conn, USAGE_CAGG, column) is False:
            await conn.execute(f"DROP MATERIALIZED VIEW {USAGE_CAGG} CASCADE")
            logger.info("continuous aggregate dropped to be made again", view=USAGE_CAGG)
            return


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
            await _add_usage_columns(conn)
            for statement in _TABLES:
                await conn.execute(statement)
            timescale = await self._set_up_timescale(conn)
            if not timescale:
                for statement in _TIME_INDEXES:
                    await conn.execute(statement)
            await conn.execute(
                _usage_by_hour_view(
                    f"SELECT * FROM {USAGE_CAGG}" if timescale else _PLAIN_RECENT_USAGE
                )
            )
            await conn.execute(_RUNS_BY_HOUR_VIEW)
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

    @staticmethod
    async def _set_up_timescale(conn: Connection) -> bool:
        """Hypertables and the continuous aggregate, when the server offers TimescaleDB."""
        found = await conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
        available = await found.fetchone()
        if not available or not available[0]:
            return False
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            # One statement per call: a continuous aggregate cannot be made in a transaction.
            for statement in _TIMESCALE:
                await conn.execute(statement)
        except psycopg.Error as exc:
            logger.warning(
                "TimescaleDB is installed but could not be set up; using plain tables",
                error=str(exc),
            )
            return False
        return True

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
            await conn.execute(queries.ROLL_UP_USAGE, (cutoff,))
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
