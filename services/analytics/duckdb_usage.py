"""Usage events into DuckDB in bulk: one Arrow table a batch, new rows found by one anti-join.

A batch arrives as a :func:`~services.analytics.usage_table.usage_table`, which DuckDB scans
without a copy. The usage table has no primary key: keeping an index up to date cost DuckDB
more than the insert itself (about three times the time of an insert without one, and more
as the table grows). A query instead picks the batch's new rows: the first of each
``(event_id, ts)`` in the batch without a stored row of the same key. That probe reads only
the stored row groups whose time range overlaps the batch's (DuckDB keeps min/max per row
group), so its cost follows the batch's time span, not the table's size. Every write goes
through the store's one writer connection, so nothing is inserted between the probe and the
insert; the two run in one transaction.
"""

# ruff: noqa: S608  (SQL is assembled from this module's constants only)

from __future__ import annotations

from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from services.analytics.queries import USAGE, USAGE_COLUMNS

USAGE_TABLE: Final = f"""CREATE TABLE IF NOT EXISTS {USAGE} (
    event_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, service VARCHAR NOT NULL,
    provider VARCHAR NOT NULL, model VARCHAR NOT NULL, capability VARCHAR,
    workflow_id VARCHAR, run_id VARCHAR, request_id VARCHAR,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    latency_ms DOUBLE NOT NULL, cost_usd DECIMAL(18,10) NOT NULL,
    status VARCHAR NOT NULL, error VARCHAR, desk VARCHAR,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0)"""

_COLUMN_LIST: Final = ", ".join(USAGE_COLUMNS)
# $1, $2: the batch's earliest and latest time. They repeat what ``stored.ts = first.ts``
# already says, as constants DuckDB can check against each row group's min/max.
_NEW_ROWS: Final = f"""
SELECT first.batch_row FROM (
    SELECT min(batch_row) AS batch_row, event_id, ts FROM usage_batch GROUP BY event_id, ts
) first
WHERE NOT EXISTS (
    SELECT 1 FROM {USAGE} stored
    WHERE stored.ts BETWEEN $1 AND $2 AND stored.event_id = first.event_id
      AND stored.ts = first.ts
)
ORDER BY first.batch_row"""
_INSERT_NEW: Final = f"INSERT INTO {USAGE} ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM new_usage"


def insert_new_usage(db: duckdb.DuckDBPyConnection, batch: pa.Table) -> pa.Table:
    """Store the rows of ``batch`` (a usage table) whose key is not stored yet, once each;
    returns those rows, in batch order."""
    if batch.num_rows == 0:
        return batch
    span = pc.min_max(batch.column("ts"))
    db.execute("BEGIN TRANSACTION")
    try:
        db.register("usage_batch", batch)
        rows = db.execute(_NEW_ROWS, [span["min"].as_py(), span["max"].as_py()]).fetchnumpy()
        # Rows are distinct and in order: as many as the batch's means all of them.
        new = batch if len(rows["batch_row"]) == batch.num_rows else batch.take(rows["batch_row"])
        if new.num_rows:
            db.register("new_usage", new)
            db.execute(_INSERT_NEW)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        db.unregister("usage_batch")
        db.unregister("new_usage")
    return new
