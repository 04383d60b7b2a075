"""A batch the store refuses for what it holds: the records it refuses alone found, the rest
stored.

The wire types refuse, as a record is decoded, every value known to be one a store cannot hold
(a dead letter naming the field). A refusal nobody foresaw would fail its batch at every try,
and the consumer would fetch the same uncommitted batch again for ever, its partitions blocked.
So a batch the store fails with a refusal of data (:func:`store_refuses`: a value it cannot
convert or hold, a constraint) is stored in halves, a half that fails in halves again, down to
the records the store refuses alone; the consumer dead-letters those with the store's error and
commits the batch. Storing a part again is harmless: the store's keys make a second insert a
no-op. k refused records of n cost about 2·k·log2(n) inserts, on a path taken only when
something is wrong.

Any other failure (the store away: a connection, a disk, a lock, the pool; or a fault of its
own: a table dropped by hand, a bug) fails the batch as a whole, as before: the consumer retries
it, and fetches it again if that fails too. Such a failure would refuse every record alike, and
dead-lettering the topic for it would hide the fault behind a full dead-letter topic.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence

import duckdb
import pyarrow as pa
import structlog

from libs.common.schemas.usage import UsageEvent, WorkflowRun
from services.analytics.ingest import Ingestor
from services.analytics.usage_table import usage_rows

logger = structlog.get_logger("pas.analytics.refusals")

Refused = list[tuple[int, Exception]]
"""Rows the store refused alone (usage rows numbered first, then runs), each with its error."""

# PostgreSQL's "program limit exceeded" (class 54), such as an index entry too big for its
# page: the row's own size, though psycopg makes it an OperationalError.
_ROW_TOO_BIG = "54"


def store_refuses(error: BaseException) -> bool:
    """Whether ``error`` is the store refusing what a batch holds (a row it cannot convert,
    range-check or fit, or a constraint), not the store being away or at fault."""
    if isinstance(
        error,
        duckdb.DataError  # conversion, out of range, type mismatch
        | duckdb.IntegrityError  # a constraint
        | duckdb.InvalidInputException,  # a value it cannot read (text, a time)
    ):
        return True
    # psycopg is an extra (``pas[postgres]``): an error of it exists only once it is imported.
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return False
    if isinstance(error, psycopg.DataError | psycopg.IntegrityError):
        return True
    return isinstance(error, psycopg.OperationalError) and (error.sqlstate or "").startswith(
        _ROW_TOO_BIG
    )


async def store_apart(
    ingestor: Ingestor, usage: Sequence[UsageEvent] | pa.Table, runs: Sequence[WorkflowRun]
) -> Refused:
    """Store the batch from Kafka; if the store refuses it, store every row but those it
    refuses alone, which are returned. Any other failure is raised."""
    try:
        await ingestor.ingest(usage, runs, source="kafka")
    except Exception as exc:
        if not store_refuses(exc):
            raise
        refusal = exc
    else:
        return []
    logger.warning(
        "the store refused a batch; storing it in parts to find what it refuses",
        usage=len(usage),
        runs=len(runs),
        error=f"{type(refusal).__name__}: {refusal}",
    )

    async def store(rows: range) -> None:
        in_usage = range(min(rows.start, len(usage)), min(rows.stop, len(usage)))
        in_runs = range(max(rows.start - len(usage), 0), max(rows.stop - len(usage), 0))
        part = (
            usage_rows(usage, in_usage)
            if isinstance(usage, pa.Table)
            else usage[in_usage.start : in_usage.stop]
        )
        await ingestor.ingest(part, runs[in_runs.start : in_runs.stop], source="kafka")

    return await refused_rows(store, range(len(usage) + len(runs)), refusal)


async def refused_rows(
    store: Callable[[range], Awaitable[None]], rows: range, refusal: Exception
) -> Refused:
    """The rows of ``rows`` (which the store refused with ``refusal``) that ``store`` refuses
    alone, each with its error, once every other row is stored."""
    if len(rows) == 1:
        return [(rows[0], refusal)]
    middle = len(rows) // 2
    refused: Refused = []
    for half in (rows[:middle], rows[middle:]):
        try:
            await store(half)
        except Exception as exc:
            if not store_refuses(exc):
                raise
            refused += await refused_rows(store, half, exc)
    return refused
