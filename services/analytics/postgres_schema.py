"""The analytics tables on PostgreSQL, made and brought up to date when the store opens.

Without TimescaleDB the raw tables are plain tables with a time index; with it they are
hypertables on ``ts`` and a continuous aggregate keeps usage per hour up to date. Either way the
views ``pas_analytics_usage_by_hour`` and ``pas_analytics_runs_by_hour`` give the whole history
per hour (rolled-up hours and recent ones alike), which is what Grafana's PostgreSQL panels read.
A database made by an older collector is altered in place (columns added since, keys changed).
"""

# ruff: noqa: S608  (SQL is assembled from fixed table names only)

from __future__ import annotations

from typing import Any, Final

import psycopg
import structlog
from psycopg import AsyncConnection

from services.analytics import queries
from services.analytics.queries import (
    ADDED_USAGE_COLUMNS,
    HOURLY_USAGE_DIMENSIONS,
    META,
    RUNS,
    RUNS_HOURLY,
    USAGE,
    USAGE_HOURLY,
)

logger = structlog.get_logger("pas.analytics.postgres")

Connection = AsyncConnection[tuple[Any, ...]]

USAGE_CAGG = "pas_analytics_usage_hourly_live"
USAGE_BY_HOUR = "pas_analytics_usage_by_hour"
RUNS_BY_HOUR = "pas_analytics_runs_by_hour"

# The hourly usage table is keyed by the hour and a SHA-256 of its dimensions, not by the
# dimensions themselves: a btree entry holds at most 2704 bytes, and seven names of up to 256
# characters (up to 4 bytes each in UTF-8) take up to 7 KiB. The digest is of each dimension's
# length, a colon and the dimension, one after the other (no two sets of names give the same
# text). A generated column, so that every row has it right, and its expression must be
# IMMUTABLE: convert_to(text, 'UTF8') is only STABLE, so the text's UTF-8 bytes are taken with
# decode(..., 'escape'), which reads every byte as itself but a backslash, once the backslashes
# are doubled.
HOURLY_USAGE_DIGEST: Final = "dimensions_sha256"
_DIMENSIONS_TEXT: Final = " || ".join(
    f"length({column})::text || ':' || {column}" for column in HOURLY_USAGE_DIMENSIONS
)
_DIGEST_COLUMN: Final = (
    f"{HOURLY_USAGE_DIGEST} BYTEA NOT NULL GENERATED ALWAYS AS "
    rf"(sha256(decode(replace({_DIMENSIONS_TEXT}, '\', '\\'), 'escape'))) STORED"
)
HOURLY_USAGE_DIGEST_KEY: Final = f"(hour, {HOURLY_USAGE_DIGEST})"

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
        {_DIGEST_COLUMN},
        PRIMARY KEY {HOURLY_USAGE_DIGEST_KEY})""",
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


async def set_up_schema(conn: Connection) -> bool:
    """The tables, indexes and views, made or brought up to date; whether TimescaleDB runs them
    (``conn`` in autocommit: a continuous aggregate cannot be made in a transaction)."""
    await _add_usage_columns(conn)
    await _key_hourly_usage_by_digest(conn)
    for statement in _TABLES:
        await conn.execute(statement)
    timescale = await _set_up_timescale(conn)
    if not timescale:
        for statement in _TIME_INDEXES:
            await conn.execute(statement)
    await conn.execute(
        _usage_by_hour_view(f"SELECT * FROM {USAGE_CAGG}" if timescale else _PLAIN_RECENT_USAGE)
    )
    await conn.execute(_RUNS_BY_HOUR_VIEW)
    return timescale


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
    each missing one is added to its tables (the hourly table's key, which the desk joins, is
    then changed by ``_key_hourly_usage_by_digest``); a continuous aggregate without one, which
    holds nothing the tables do not, is dropped to be made again (``set_up_schema`` makes it
    and the view over it)."""
    for table, place in ((USAGE, 1), (USAGE_HOURLY, 2)):
        for added in ADDED_USAGE_COLUMNS:
            column, definition = added[0], added[place]
            if await _has_column(conn, table, column) is not False:
                continue
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            logger.info("usage table given a new column", table=table, column=column)
    for column, _, _ in ADDED_USAGE_COLUMNS:
        if await _has_column(conn, USAGE_CAGG, column) is False:
            await conn.execute(f"DROP MATERIALIZED VIEW {USAGE_CAGG} CASCADE")
            logger.info("continuous aggregate dropped to be made again", view=USAGE_CAGG)
            return


async def _key_hourly_usage_by_digest(conn: Connection) -> None:
    """A database made before the hourly usage table was keyed by its dimensions' digest: the
    digest column is added (PostgreSQL computes it for every row) and becomes the key with the
    hour, in one transaction. The table is locked before it is looked at again, so that of two
    collectors opening at once one alters it and the other finds it done."""
    if await _has_column(conn, USAGE_HOURLY, HOURLY_USAGE_DIGEST) is not False:
        return
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {USAGE_HOURLY} IN ACCESS EXCLUSIVE MODE")
        if await _has_column(conn, USAGE_HOURLY, HOURLY_USAGE_DIGEST):
            return
        await conn.execute(
            f"ALTER TABLE {USAGE_HOURLY} ADD COLUMN {_DIGEST_COLUMN}, "
            f"DROP CONSTRAINT {USAGE_HOURLY}_pkey, ADD PRIMARY KEY {HOURLY_USAGE_DIGEST_KEY}"
        )
    logger.info(
        "hourly usage table keyed by its dimensions' digest",
        table=USAGE_HOURLY,
        column=HOURLY_USAGE_DIGEST,
    )


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
