"""Usage events as an Arrow table: what the DuckDB store inserts, and what the metrics count.

One typed column per stored column (``queries.USAGE_COLUMNS``), built in C from the decoded
structs, plus ``batch_row``: each event's position in the batch it came from. Summing a batch
for the metrics is then a few grouped aggregations in Arrow, not Python work per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from operator import attrgetter
from typing import Final

import msgspec
import numpy as np
import pyarrow as pa

from libs.common.schemas.usage import UsageEvent
from services.analytics.queries import USAGE_COLUMNS

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
_zone = attrgetter("tzinfo")
# (table column, event attribute, Arrow type), in the order of queries.USAGE_COLUMNS.
USAGE_FIELDS: Final = (
    ("event_id", "event_id", pa.string()),
    ("ts", "timestamp", TIMESTAMP),
    ("service", "service", pa.string()),
    ("provider", "provider", pa.string()),
    ("model", "model", pa.string()),
    ("capability", "capability", pa.string()),
    ("workflow_id", "workflow_id", pa.string()),
    ("run_id", "run_id", pa.string()),
    ("request_id", "request_id", pa.string()),
    ("prompt_tokens", "prompt_tokens", pa.int32()),
    ("completion_tokens", "completion_tokens", pa.int32()),
    ("latency_ms", "latency_ms", pa.float64()),
    ("cost_usd", "cost_usd", pa.float64()),
    ("status", "status", pa.string()),
    ("error", "error", pa.string()),
    ("desk", "desk", pa.string()),
    ("cached_tokens", "cached_tokens", pa.int32()),
    ("cache_write_tokens", "cache_write_tokens", pa.int32()),
)
assert tuple(column for column, _, _ in USAGE_FIELDS) == USAGE_COLUMNS
_GETTERS: Final = tuple((attrgetter(attribute), kind) for _, attribute, kind in USAGE_FIELDS)
USAGE_SCHEMA: Final = pa.schema(
    [*((column, kind) for column, _, kind in USAGE_FIELDS), ("batch_row", pa.int32())]
)


def usage_table(events: Sequence[UsageEvent]) -> pa.Table:
    """The events as columns, plus each one's position in ``events`` (``batch_row``)."""
    columns = [
        _timestamps(list(map(get, events)))
        if kind == TIMESTAMP
        else pa.array(list(map(get, events)), type=kind)
        for get, kind in _GETTERS
    ]
    columns.append(row_numbers(len(events)))
    return pa.Table.from_arrays(columns, schema=USAGE_SCHEMA)


def usage_events(table: pa.Table) -> list[UsageEvent]:
    """A usage table's rows as events (for a store that writes events)."""
    attributes = {column: attribute for column, attribute, _ in USAGE_FIELDS}
    rows = table.select(list(attributes)).rename_columns(list(attributes.values())).to_pylist()
    return msgspec.convert(rows, list[UsageEvent])


def concat_usage(tables: Sequence[pa.Table]) -> pa.Table:
    """Usage tables as one, ``batch_row`` counted again across them (a row's place in it)."""
    if len(tables) == 1:
        return tables[0]
    return _numbered(pa.concat_tables(tables))


def usage_rows(table: pa.Table, rows: range) -> pa.Table:
    """``rows`` of a usage table as one, ``batch_row`` counted again from 0 (a row's place in
    it, as the stores read it)."""
    return _numbered(table.slice(rows.start, len(rows)))


def _numbered(table: pa.Table) -> pa.Table:
    """A usage table with ``batch_row`` (its last column) counted from 0."""
    rows = row_numbers(table.num_rows)
    return table.set_column(table.num_columns - 1, USAGE_SCHEMA.field("batch_row"), rows)


def row_numbers(count: int) -> pa.Array:
    """0 to ``count`` - 1 as ``batch_row``. From numpy: Arrow builds an array from a Python
    range one int object at a time (a twentieth of the collector's time under the lock)."""
    return pa.array(np.arange(count, dtype=np.int32))


def _timestamps(moments: list[datetime]) -> pa.Array:
    """Aware datetimes as UTC microseconds. Arrow converts an aware datetime several times
    slower than a string, so they go through RFC 3339 text, which msgspec writes in C and
    Arrow parses with the offset. msgspec writes offsets to the minute, as its decoder reads
    them; a zone of another kind (a ``zoneinfo`` zone, seconds in the offset) takes Arrow's
    own conversion."""
    if all(map(_minute_offset, set(map(_zone, moments)))):
        return pa.array(msgspec.to_builtins(moments), type=pa.string()).cast(TIMESTAMP)
    return pa.array(moments, type=TIMESTAMP)


def _minute_offset(zone: tzinfo | None) -> bool:
    if not isinstance(zone, timezone):
        return False
    offset = zone.utcoffset(None)
    return offset % timedelta(minutes=1) == timedelta(0)
