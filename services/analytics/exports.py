"""Rows to CSV, JSON lines or Parquet, a chunk at a time, so that exports stay small in memory.

CSV and JSON lines are written as rows come from the store. Parquet needs a file (its footer
describes the whole file), so rows are spooled into a temporary DuckDB database on disk, written
out with DuckDB's ``COPY ... (FORMAT parquet)`` and streamed from there; both temporary files are
deleted when the response ends or the client goes away.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import duckdb
import msgspec

from services.analytics.queries import EXPORT_COLUMNS

MEDIA_TYPES: Final = {
    "csv": "text/csv",
    "json": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
FILE_SUFFIXES: Final = {"csv": "csv", "json": "jsonl", "parquet": "parquet"}

_FILE_CHUNK_BYTES = 1 << 20
_json = msgspec.json.Encoder(decimal_format="number")

# DuckDB column types of each export, for the Parquet spool of stores other than DuckDB.
_TEXT, _TIME, _INT, _DOUBLE, _MONEY = "VARCHAR", "TIMESTAMPTZ", "BIGINT", "DOUBLE", "DECIMAL(38,10)"
COLUMN_TYPES: Final[dict[str, str]] = {
    "event_id": _TEXT,
    "run_id": _TEXT,
    "timestamp": _TIME,
    "hour": _TIME,
    "service": _TEXT,
    "provider": _TEXT,
    "model": _TEXT,
    "capability": _TEXT,
    "workflow_id": _TEXT,
    "request_id": _TEXT,
    "status": _TEXT,
    "error": _TEXT,
    "desk": _TEXT,
    "source": _TEXT,
    "prompt_tokens": _INT,
    "completion_tokens": _INT,
    "cached_tokens": _INT,
    "cache_write_tokens": _INT,
    "calls": _INT,
    "runs": _INT,
    "timed_runs": _INT,
    "latency_ms": _DOUBLE,
    "latency_ms_sum": _DOUBLE,
    "duration_ms": _DOUBLE,
    "duration_ms_sum": _DOUBLE,
    "cost_usd": _MONEY,
}


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def csv_header(columns: Sequence[str]) -> bytes:
    return csv_rows([columns])


def csv_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([_csv_value(v) for v in row] for row in rows)
    return buffer.getvalue().encode()


def json_lines(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    return b"".join(_json.encode(dict(zip(columns, row, strict=True))) + b"\n" for row in rows)


def format_rows(fmt: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    return csv_rows(rows) if fmt == "csv" else json_lines(columns, rows)


def temporary_path(suffix: str) -> Path:
    handle, name = tempfile.mkstemp(prefix="pas-analytics-export-", suffix=suffix)
    os.close(handle)
    return Path(name)


async def stream_file(path: Path) -> AsyncIterator[bytes]:
    """The file's bytes in pieces; the file is deleted afterwards, however the stream ends."""
    try:
        with path.open("rb") as file:
            while chunk := await asyncio.to_thread(file.read, _FILE_CHUNK_BYTES):
                yield chunk
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


class ParquetSpool:
    """Collects rows in a DuckDB file on disk, then writes them as one Parquet file."""

    def __init__(self, kind: str) -> None:
        self.columns = EXPORT_COLUMNS[kind]
        self._database = temporary_path(".duckdb")
        self._database.unlink()  # DuckDB creates it; an empty file is not a database
        self._db = duckdb.connect(str(self._database))
        self._db.execute("SET GLOBAL TimeZone = 'UTC'")
        self._db.execute(
            "CREATE TABLE spool ("
            + ", ".join(f'"{c}" {COLUMN_TYPES[c]}' for c in self.columns)
            + ")"
        )
        casts = ", ".join(
            f"unnest(${i}::{COLUMN_TYPES[c]}[])" for i, c in enumerate(self.columns, start=1)
        )
        self._insert = f"INSERT INTO spool SELECT {casts}"

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._db.execute(self._insert, [list(column) for column in _columns_of(rows)])

    def finish(self) -> Path:
        """Write the Parquet file; the spool database is gone afterwards."""
        target = temporary_path(".parquet")
        try:
            # The path is our own temporary file, not user input.
            self._db.execute(
                f"COPY (SELECT * FROM spool) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"  # noqa: S608
            )
        finally:
            self.discard()
        return target

    def discard(self) -> None:
        self._db.close()
        for leftover in (self._database, Path(f"{self._database}.wal")):
            leftover.unlink(missing_ok=True)


def _columns_of(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(_spoolable(v) for v in column) for column in zip(*rows, strict=True)]


def _spoolable(value: Any) -> Any:
    # DuckDB takes Decimal lists as DOUBLE; the text keeps every digit into DECIMAL(38,10).
    return str(value) if isinstance(value, Decimal) else value
