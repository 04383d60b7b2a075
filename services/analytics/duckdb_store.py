"""The default store: one DuckDB file, columnar, fast on aggregates, Parquet built in.

DuckDB is synchronous and a connection is not for concurrent use, so writes run on two writer
threads, each with a connection of its own: one appends usage events, the other stores run
outcomes and quality scores. A batch's usage and outcomes are written at the same time (DuckDB
runs transactions on different tables side by side, and releases the interpreter lock while
it works), and what touches both tables (the roll-up) waits until both writers are free and
holds them both. Each read and each export opens its own cursor (a connection to the same
database) on a small pool of reader threads, so reads never wait for writes or block the event
loop. Cursors are created from a root connection under a lock; the root runs no query until the
store closes, after the reader threads have finished (a read whose caller went away still runs
to its end). The tables, and bringing an older file's up to date, are ``duckdb_schema.py``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import duckdb
import pyarrow as pa
import structlog

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
from services.analytics.batches import new_runs, run_columns, score_columns
from services.analytics.duckdb_schema import bring_up_to_date
from services.analytics.duckdb_usage import insert_new_usage
from services.analytics.exports import csv_header, format_rows, stream_file, temporary_path
from services.analytics.queries import (
    EXPORT_COLUMNS,
    EXPORTS,
    HOURLY_USAGE_KEY,
)
from services.analytics.store import ExportFormat, ExportKind, TimeWindow, TrendFilter
from services.analytics.usage_table import usage_table

logger = structlog.get_logger("pas.analytics.duckdb")

T = TypeVar("T")

_READER_THREADS = 4


class _Writer:
    """One writer thread and its connection; its jobs run one after another, in the order they
    were handed over, and are handed over without waiting for the one before to end."""

    def __init__(self, name: str) -> None:
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"duckdb-{name}-writer")
        self.db: duckdb.DuckDBPyConnection | None = None
        self._unfinished = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def submit(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        """Queue ``work`` behind this writer's earlier jobs; ``idle`` is set again once every
        job handed over has ended."""
        assert self.db is not None, "DuckDBStore.open() was not awaited"
        loop = asyncio.get_running_loop()
        job = self.thread.submit(work, self.db)
        self._unfinished += 1
        self.idle.clear()
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._ended))
        return job

    def _ended(self) -> None:
        self._unfinished -= 1
        if not self._unfinished:
            self.idle.set()


async def _outcome(job: Future[T]) -> T:
    """The job's result. A caller that stops waiting leaves the job queued: it still runs."""
    return await asyncio.shield(asyncio.wrap_future(job))


_ROLL_UP_USAGE: Final = queries.roll_up_usage(HOURLY_USAGE_KEY)


class DuckDBStore:
    kind = "duckdb"
    # One batch written while the next waits in the writers' queues: the writer threads never
    # wait for the event loop (busy fetching and decoding) to hand them the next one.
    batches_in_flight = 2
    reads_usage_tables = True

    def __init__(self, path: str) -> None:
        self._path = path
        self._root: duckdb.DuckDBPyConnection | None = None
        self._usage_writer = _Writer("usage")
        self._outcome_writer = _Writer("outcome")
        # Held by a job that needs both writers (the roll-up, closing) from its wait for both to
        # be idle until it ends; a job for one writer holds it only to be queued. So jobs queue
        # behind a waiting roll-up instead of keeping it waiting for ever.
        self._both = asyncio.Lock()
        self._readers = ThreadPoolExecutor(_READER_THREADS, thread_name_prefix="duckdb-reader")
        self._cursor_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        assert self._root is not None, "DuckDBStore.open() was not awaited"
        with self._cursor_lock:
            return self._root.cursor()

    async def _write(self, writer: _Writer, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``work`` on ``writer``, after the jobs queued there before it."""
        async with self._both:
            job = writer.submit(work)
        return await _outcome(job)

    async def _write_both(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``work`` on the usage writer once neither writer has a job, neither taking one
        until it is done (even when the caller stops waiting)."""
        await self._both.acquire()
        try:
            await self._usage_writer.idle.wait()
            await self._outcome_writer.idle.wait()
            job = self._usage_writer.submit(work)
        except BaseException:
            self._both.release()
            raise
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._both.release))
        return await _outcome(job)

    def _read_sync(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._cursor() as cursor:
            return cursor.execute(sql, list(params)).fetchall()

    async def _on_reader(self, work: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(work, *args))

    async def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return await self._on_reader(self._read_sync, sql, params)

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)

        def connect() -> None:
            self._root = duckdb.connect(self._path)
            self._root.execute("SET GLOBAL TimeZone = 'UTC'")
            db = self._usage_writer.db = self._cursor()
            self._outcome_writer.db = self._cursor()
            bring_up_to_date(db)

        await asyncio.get_running_loop().run_in_executor(self._usage_writer.thread, connect)
        logger.info("analytics store opened", store=self.kind, path=self._path)

    async def close(self) -> None:
        def disconnect() -> None:
            # Reads still running (their callers may be gone) finish first.
            self._readers.shutdown(wait=True)
            with self._cursor_lock:
                for writer in (self._usage_writer, self._outcome_writer):
                    if writer.db is not None:
                        writer.db.close()
                if self._root is not None:
                    # A checkpoint folds the WAL into the file: the next start opens faster.
                    self._root.execute("CHECKPOINT")
                    self._root.close()
                    self._root = None

        # Each writer's last job is over first.
        await self._write_both(lambda _: disconnect())
        self._usage_writer.thread.shutdown(wait=True)
        self._outcome_writer.thread.shutdown(wait=True)

    # -- writes --------------------------------------------------------------------------------

    async def insert_usage(self, usage: Sequence[UsageEvent] | pa.Table) -> pa.Table:
        # A table of events is built on the writer thread: the event loop stays free meanwhile.
        return await self._write(
            self._usage_writer,
            lambda db: insert_new_usage(
                db, usage if isinstance(usage, pa.Table) else usage_table(usage)
            ),
        )

    async def insert_runs(self, runs: Sequence[WorkflowRun]) -> list[WorkflowRun]:
        if not runs:
            return []
        unique, columns = run_columns(runs)

        def replace_outcomes(db: duckdb.DuckDBPyConnection) -> list[Any]:
            db.execute("BEGIN TRANSACTION")
            try:
                db.execute(queries.DELETE_SUPERSEDED_RUNS, columns)
                stored = db.execute(queries.INSERT_RUNS, columns).fetchall()
                db.execute("COMMIT")
            except Exception:
                db.execute("ROLLBACK")
                raise
            return stored

        return new_runs(unique, await self._write(self._outcome_writer, replace_outcomes))

    async def insert_scores(self, scores: Sequence[QualityScore]) -> int:
        if not scores:
            return 0
        columns = score_columns(scores)
        await self._write(
            self._outcome_writer, lambda db: db.execute(queries.UPSERT_SCORES, columns)
        )
        return len(columns[0])

    async def roll_up(self, cutoff: datetime) -> RollupResult:
        def fold(db: duckdb.DuckDBPyConnection) -> RollupResult:
            db.execute("BEGIN TRANSACTION")
            try:
                db.execute(_ROLL_UP_USAGE, [cutoff])
                db.execute(queries.ROLL_UP_RUNS, [cutoff])
                usage_rows = _count(db.execute(queries.DELETE_ROLLED_USAGE, [cutoff]).fetchone())
                run_rows = _count(db.execute(queries.DELETE_ROLLED_RUNS, [cutoff]).fetchone())
                db.execute(queries.SET_HORIZON, [cutoff])
                db.execute("COMMIT")
            except Exception:
                db.execute("ROLLBACK")
                raise
            return RollupResult(cutoff=cutoff, usage_rows=usage_rows, run_rows=run_rows)

        return await self._write_both(fold)

    # -- queries -------------------------------------------------------------------------------

    async def costs(self, window: TimeWindow, group_by: GroupBy) -> list[CostLine]:
        rows = await self._read(queries.costs(group_by), [window.start, window.end])
        return results.cost_lines(rows)

    async def score_stats(self, window: TimeWindow, workflow_id: str | None) -> list[ScoreLine]:
        rows = await self._read(queries.SCORE_STATS, [window.start, window.end, workflow_id])
        return results.score_lines(rows)

    async def workflow_stats(self, window: TimeWindow) -> list[WorkflowStats]:
        sql = queries.workflow_stats(queries.DUCKDB)
        return results.workflow_stats(await self._read(sql, [window.start, window.end]))

    async def model_stats(self, window: TimeWindow) -> list[ModelStats]:
        sql = queries.model_stats(queries.DUCKDB)
        return results.model_stats(await self._read(sql, [window.start, window.end]))

    async def trend(
        self, metric: TrendMetric, bucket: Bucket, window: TimeWindow, where: TrendFilter
    ) -> list[TrendPoint]:
        sql, extra = queries.trend(
            metric,
            bucket,
            queries.DUCKDB,
            workflow_id=where.workflow_id,
            model=where.model,
            desk=where.desk,
        )
        rows = await self._read(sql, [window.start, window.end, *extra])
        return results.trend_points(rows, metric, bucket, window.start, window.end)

    async def success_rates(self, window: TimeWindow) -> dict[str, float]:
        rows = await self._read(queries.success_rates(), [window.start, window.end])
        return {workflow: float(rate) for workflow, rate in rows if rate is not None}

    # -- exports -------------------------------------------------------------------------------

    async def export(
        self, kind: ExportKind, fmt: ExportFormat, window: TimeWindow, chunk_rows: int
    ) -> AsyncIterator[bytes]:
        params = [window.start, window.end]
        if fmt == "parquet":
            path = temporary_path(".parquet")

            def write_parquet() -> None:
                with self._cursor() as cursor:
                    cursor.execute(
                        f"COPY ({EXPORTS[kind]}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)",
                        params,
                    )

            try:
                await self._on_reader(write_parquet)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            async for chunk in stream_file(path):
                yield chunk
            return
        columns = EXPORT_COLUMNS[kind]
        cursor = await self._on_reader(self._cursor)
        try:
            await self._on_reader(cursor.execute, EXPORTS[kind], params)
            if fmt == "csv":
                yield csv_header(columns)
            while rows := await self._on_reader(cursor.fetchmany, chunk_rows):
                yield format_rows(fmt, columns, rows)
        finally:
            await self._on_reader(cursor.close)


def _count(row: tuple[Any, ...] | None) -> int:
    return int(row[0]) if row else 0
