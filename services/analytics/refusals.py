"""A batch the store refuses for what it holds: the records it refuses alone found, the rest
stored.

The wire types refuse, as a record is decoded, every value known to be one a store cannot hold
(a dead letter naming the field). A refusal nobody foresaw would fail its batch at every try,
and the consumer would fetch the same uncommitted batch again for ever, its partitions blocked.
So a batch the store fails with a refusal of data (:func:`store_refuses`: a value it cannot
convert or hold, a constraint) is stored in halves, a half that fails in halves again, down to
the records the store refuses alone; the consumer dead-letters those with the store's error and
commits the batch, and ``POST /events`` names them in its 422 (the rest of the body stored).
Storing a part again is harmless: the store's keys make a second insert a no-op, and a row the
batch stored already is not counted again as a duplicate (``ingest.py``). k refused records of
n cost about 2·k·log2(n) inserts, on a path taken only when something is wrong.

Any other failure (the store away: a connection, a disk, a lock, the pool; or a fault of its
own: a table dropped by hand, a bug) fails the batch as a whole, as before: the consumer retries
it, and fetches it again if that fails too (``POST /events`` answers 500). Such a failure would
refuse every record alike, and dead-lettering the topic for it would hide the fault behind a
full dead-letter topic.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import duckdb
import pyarrow as pa
import structlog

from libs.common.schemas.usage import IngestResult, QualityScore, UsageEvent, WorkflowRun
from services.analytics.ingest import Ingestor, NewRows
from services.analytics.usage_table import usage_rows

logger = structlog.get_logger("pas.analytics.refusals")

Refused = list[tuple[int, Exception]]
"""Rows the store refused alone (usage rows numbered first, then runs, then scores), each with
its error."""
RowKind = Literal["usage", "runs", "scores"]

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
    ingestor: Ingestor,
    usage: Sequence[UsageEvent] | pa.Table,
    runs: Sequence[WorkflowRun],
    *,
    source: str,
    new: NewRows,
    scores: Sequence[QualityScore] = (),
) -> Refused:
    """Store the batch; if the store refuses it, store every row but those it refuses alone,
    which are returned. Any other failure is raised. What the writes find new is added to
    ``new`` (the caller counts the batch's duplicates once it is done: ``ingest.py``)."""
    try:
        await ingestor.write(usage, runs, source=source, new=new, scores=scores)
    except Exception as exc:
        if not store_refuses(exc):
            raise
        refusal = exc
    else:
        return []
    logger.warning(
        "the store refused a batch; storing it in parts to find what it refuses",
        source=source,
        usage=len(usage),
        runs=len(runs),
        scores=len(scores),
        error=f"{type(refusal).__name__}: {refusal}",
    )

    async def store(rows: range) -> None:
        in_usage = _within(rows, 0, len(usage))
        in_runs = _within(rows, len(usage), len(runs))
        in_scores = _within(rows, len(usage) + len(runs), len(scores))
        part = (
            usage_rows(usage, in_usage)
            if isinstance(usage, pa.Table)
            else usage[in_usage.start : in_usage.stop]
        )
        await ingestor.write(
            part,
            runs[in_runs.start : in_runs.stop],
            source=source,
            new=new,
            scores=scores[in_scores.start : in_scores.stop],
        )

    return await refused_rows(store, range(len(usage) + len(runs) + len(scores)), refusal)


def _within(rows: range, start: int, count: int) -> range:
    """The rows of ``rows`` among the ``count`` from ``start`` (one kind's), counted from 0."""
    return range(min(max(rows.start - start, 0), count), min(max(rows.stop - start, 0), count))


def refused_kinds(refused: Refused, usage: int, runs: int) -> list[tuple[RowKind, int, Exception]]:
    """Each refused row of a batch of ``usage`` usage rows and ``runs`` runs (then scores) as
    its kind, its index among that kind's rows and the store's error."""
    placed: list[tuple[RowKind, int, Exception]] = []
    for row, error in refused:
        if row < usage:
            placed.append(("usage", row, error))
        elif row < usage + runs:
            placed.append(("runs", row - usage, error))
        else:
            placed.append(("scores", row - usage - runs, error))
    return placed


def count_batch(
    ingestor: Ingestor, refused: Refused, new: NewRows, *, usage: int, runs: int, scores: int = 0
) -> IngestResult:
    """Count the duplicates of a batch of ``usage``, ``runs`` and ``scores`` rows once it is
    stored (:func:`store_apart`, which found ``new`` and ``refused``): the rows neither found
    new nor refused; what it comes to."""
    kinds = Counter(kind for kind, _, _ in refused_kinds(refused, usage, runs))
    return ingestor.count_duplicates(
        usage=usage - kinds["usage"],
        runs=runs - kinds["runs"],
        scores=scores - kinds["scores"],
        new=new,
    )


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
