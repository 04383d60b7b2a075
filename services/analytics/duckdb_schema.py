"""The analytics tables in a DuckDB file, made and brought up to date when the store opens.

A file made by an older collector is altered in place: columns added since are added, and a
table whose key changed is copied once into one of the new layout (DuckDB changes no key in
place). The PostgreSQL twin is ``postgres_schema.py``.
"""

# ruff: noqa: S608  (SQL is assembled from fixed table names only)

from __future__ import annotations

import duckdb
import structlog

from services.analytics import queries
from services.analytics.duckdb_usage import USAGE_TABLE
from services.analytics.queries import (
    ADDED_USAGE_COLUMNS,
    HOURLY_USAGE_KEY,
    META,
    RUNS,
    RUNS_HOURLY,
    USAGE,
    USAGE_HOURLY,
)

logger = structlog.get_logger("pas.analytics.duckdb")

_USAGE_HOURLY_TABLE = f"""CREATE TABLE IF NOT EXISTS {USAGE_HOURLY} (
    hour TIMESTAMPTZ NOT NULL, service VARCHAR NOT NULL, provider VARCHAR NOT NULL,
    model VARCHAR NOT NULL, capability VARCHAR NOT NULL, workflow_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL, calls BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL, cost_usd DECIMAL(38,10) NOT NULL,
    latency_ms_sum DOUBLE NOT NULL, desk VARCHAR NOT NULL DEFAULT '',
    cached_tokens BIGINT NOT NULL DEFAULT 0, cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY {HOURLY_USAGE_KEY})"""

SCHEMA = (
    USAGE_TABLE,
    f"""CREATE TABLE IF NOT EXISTS {RUNS} (
        run_id VARCHAR NOT NULL, status VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL,
        workflow_id VARCHAR NOT NULL, duration_ms DOUBLE, source VARCHAR NOT NULL,
        error VARCHAR,
        PRIMARY KEY (run_id, status, ts))""",
    _USAGE_HOURLY_TABLE,
    f"""CREATE TABLE IF NOT EXISTS {RUNS_HOURLY} (
        hour TIMESTAMPTZ NOT NULL, workflow_id VARCHAR NOT NULL, status VARCHAR NOT NULL,
        runs BIGINT NOT NULL, duration_ms_sum DOUBLE NOT NULL, timed_runs BIGINT NOT NULL,
        PRIMARY KEY (hour, workflow_id, status))""",
    f"""CREATE TABLE IF NOT EXISTS {META} (
        key VARCHAR PRIMARY KEY, value TIMESTAMPTZ NOT NULL)""",
    queries.scores_table("VARCHAR", "DOUBLE"),
)
"""Every table, each made where it is missing."""


def bring_up_to_date(db: duckdb.DuckDBPyConnection) -> None:
    """The tables of the file ``db`` is connected to, as this collector writes them."""
    _add_usage_columns(db)
    _drop_usage_key(db)
    for statement in SCHEMA:
        db.execute(statement)


def _columns(db: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    found = db.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = $1", [table]
    ).fetchall()
    return {name for (name,) in found}


def _add_usage_columns(db: duckdb.DuckDBPyConnection) -> None:
    """A file made before usage had all its columns (``queries.ADDED_USAGE_COLUMNS``): each
    missing one is added to its tables; the hourly table, whose key the desk joins, is copied
    once into one of the new layout if it has no desk."""
    raw = _columns(db, USAGE)
    for column, definition, _ in ADDED_USAGE_COLUMNS if raw else ():
        if column not in raw:
            db.execute(f"ALTER TABLE {USAGE} ADD COLUMN {column} {definition}")
            logger.info("usage table given a new column", table=USAGE, column=column)
    hourly = _columns(db, USAGE_HOURLY)
    if hourly and "desk" not in hourly:
        _rebuild(db, USAGE_HOURLY, _USAGE_HOURLY_TABLE)
        logger.info("hourly usage table rebuilt with desks in its key", table=USAGE_HOURLY)
        return
    for column, _, definition in ADDED_USAGE_COLUMNS if hourly else ():
        if column not in hourly:
            db.execute(f"ALTER TABLE {USAGE_HOURLY} ADD COLUMN {column} {definition}")
            logger.info("usage table given a new column", table=USAGE_HOURLY, column=column)


def _rebuild(db: duckdb.DuckDBPyConnection, table: str, definition: str, order: str = "") -> None:
    """``table`` copied into a new one made by ``definition``, in one transaction: its rows by
    column name (columns it lacks take their defaults), in the ``order`` given (an ORDER BY
    clause), so that row groups cover short spans."""
    db.execute("BEGIN TRANSACTION")
    try:
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_before")
        db.execute(definition)
        db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {table}_before {order}")
        db.execute(f"DROP TABLE {table}_before")
        db.execute("COMMIT")
    except Exception:
        db.execute("ROLLBACK")
        raise


def _drop_usage_key(db: duckdb.DuckDBPyConnection) -> None:
    """A file made while the usage table had a primary key: copy the table once into one
    without it (see ``duckdb_usage``), in time order."""
    keyed = db.execute(
        "SELECT count(*) FROM duckdb_constraints() "
        "WHERE table_name = $1 AND constraint_type = 'PRIMARY KEY'",
        [USAGE],
    ).fetchone()
    if keyed is None or not keyed[0]:
        return
    _rebuild(db, USAGE, USAGE_TABLE, "ORDER BY ts")
    logger.info("usage table rebuilt without its primary key", table=USAGE)
