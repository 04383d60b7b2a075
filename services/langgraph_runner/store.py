"""Where run records survive restarts: one small protocol, SQLite and PostgreSQL backends.

A record is the run's public status plus what only the runner needs (its owner, whether its
outcome is to be reported and was, the trigger's trace headers). Kafka-triggered runs carry
their ``event_id`` in a unique column: that is the dedupe, so an event delivered twice (or
again after a restart) finds the run it already started.

The outbox of outcomes (``outcomes.py``) is a query: runs that ended, are ``reportable`` and
not ``published`` (reported). ``reportable`` came with REST-started runs being reported too;
a store written before it gets the column at open, set for its Kafka-triggered runs only (the
ones that were reported then), so that old REST-started runs are not reported now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import msgspec

from libs.common.schemas.workflows import TERMINAL_STATUSES, RunStatus
from services.langgraph_runner.errors import RunConflict

_UNFINISHED = ("pending", "running")
_REPORTABLE = ("success", "error", "cancelled")
_COLUMNS = "run_id, workflow_id, status, owner, event_id, published, created_at, record, reportable"


class RunRecord(msgspec.Struct, kw_only=True):
    run: RunStatus
    owner: str
    report: bool = False
    """Its outcome is to be reported when it ends (decided when the run is created, by the
    configured channel; a Kafka-triggered run's always is)."""
    reported: bool = msgspec.field(default=False, name="published")
    """The outcome of its latest end was acknowledged by the channel (the broker, or the
    version manager)."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Trace context of the trigger, passed on to the result."""

    def __post_init__(self) -> None:
        # Records stored before ``report`` existed: their Kafka-triggered runs were reported.
        if self.run.event_id is not None:
            self.report = True

    @property
    def awaits_report(self) -> bool:
        """Ended, to be reported, and not reported yet."""
        return self.report and not self.reported and self.run.status in TERMINAL_STATUSES


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(RunRecord).decode


class RunStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, record: RunRecord) -> None:
        """Insert a new run; :class:`RunConflict` if its id is taken."""
        ...

    async def create_for_event(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Insert unless a run for the record's ``event_id`` exists: (that run, False)."""
        ...

    async def save(self, record: RunRecord) -> None: ...

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def recent(
        self, *, workflow_id: str | None, status: str | None, limit: int
    ) -> list[RunRecord]:
        """Newest first."""
        ...

    async def unfinished(self, owner: str) -> list[RunRecord]:
        """Runs of ``owner`` that were pending or running: to resume at start."""
        ...

    async def unreported(self) -> list[RunRecord]:
        """Runs that ended and are to be reported, not reported yet: oldest first."""
        ...


def _columns(record: RunRecord) -> tuple[Any, ...]:
    run = record.run
    return (
        run.run_id,
        run.workflow_id,
        run.status,
        record.owner,
        run.event_id,
        record.reported,
        run.created_at.isoformat(),
        _encode(record),
        record.report,
    )


class SQLiteRunStore:
    """The default: one SQLite file in WAL mode, one connection, writes serialised."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def _db(self) -> aiosqlite.Connection:
        assert self._connection is not None, "SQLiteRunStore.open() was not awaited"
        return self._connection

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every statement is its own transaction, one round trip to the database
        # thread instead of two (a run's record is written at every step).
        self._connection = db = await aiosqlite.connect(self._path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, "
            "status TEXT NOT NULL, owner TEXT NOT NULL, event_id TEXT UNIQUE, "
            "published INTEGER NOT NULL, created_at TEXT NOT NULL, record BLOB NOT NULL, "
            "reportable INTEGER)"
        )
        async with db.execute("PRAGMA table_info(runs)") as rows:
            columns = {row[1] async for row in rows}
        if "reportable" not in columns:
            await db.execute("ALTER TABLE runs ADD COLUMN reportable INTEGER")
        await db.execute(
            "UPDATE runs SET reportable = (event_id IS NOT NULL) WHERE reportable IS NULL"
        )
        await db.execute("CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, owner)")
        await db.execute("CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at)")
        await db.execute("DROP INDEX IF EXISTS runs_unpublished")
        await db.execute(
            "CREATE INDEX IF NOT EXISTS runs_unreported ON runs (status) "
            "WHERE reportable = 1 AND published = 0"
        )

    async def close(self) -> None:
        await self._db.close()

    async def create(self, record: RunRecord) -> None:
        async with self._lock:
            try:
                await self._db.execute(
                    f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (fixed columns)
                    _columns(record),
                )
            except aiosqlite.IntegrityError as exc:
                raise RunConflict(f"run id {record.run.run_id!r} is taken") from exc

    async def create_for_event(self, record: RunRecord) -> tuple[RunRecord, bool]:
        async with self._lock:
            cursor = await self._db.execute(
                f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 (fixed columns)
                "ON CONFLICT (event_id) DO NOTHING",
                _columns(record),
            )
            if cursor.rowcount == 1:
                return record, True
            async with self._db.execute(
                "SELECT record FROM runs WHERE event_id = ?", (record.run.event_id,)
            ) as rows:
                row = await rows.fetchone()
        assert row is not None, "a conflicting event id must have its run"
        return _decode(row[0]), False

    async def save(self, record: RunRecord) -> None:
        async with self._lock:
            await self._db.execute(
                "UPDATE runs SET status = ?, owner = ?, published = ?, reportable = ?, record = ? "
                "WHERE run_id = ?",
                (
                    record.run.status,
                    record.owner,
                    record.reported,
                    record.report,
                    _encode(record),
                    record.run.run_id,
                ),
            )

    async def _select(self, where: str, args: Iterable[Any]) -> list[RunRecord]:
        async with self._db.execute(f"SELECT record FROM runs {where}", tuple(args)) as rows:  # noqa: S608 (fixed clauses; values are bound)
            return [_decode(row[0]) async for row in rows]

    async def get(self, run_id: str) -> RunRecord | None:
        found = await self._select("WHERE run_id = ?", (run_id,))
        return found[0] if found else None

    async def recent(
        self, *, workflow_id: str | None, status: str | None, limit: int
    ) -> list[RunRecord]:
        return await self._select(
            "WHERE (? IS NULL OR workflow_id = ?) AND (? IS NULL OR status = ?) "
            "ORDER BY created_at DESC LIMIT ?",
            (workflow_id, workflow_id, status, status, limit),
        )

    async def unfinished(self, owner: str) -> list[RunRecord]:
        return await self._select(
            "WHERE status IN (?, ?) AND owner = ? ORDER BY created_at", (*_UNFINISHED, owner)
        )

    async def unreported(self) -> list[RunRecord]:
        return await self._select(
            "WHERE reportable = 1 AND published = 0 AND status IN (?, ?, ?) ORDER BY created_at",
            _REPORTABLE,
        )


class PostgresRunStore:
    """Run records next to the PostgreSQL checkpoints, on the same connection pool
    (psycopg, autocommit, dict rows: as AsyncPostgresSaver wants it)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def open(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS pas_runner_runs (run_id TEXT PRIMARY KEY, "
                "workflow_id TEXT NOT NULL, status TEXT NOT NULL, owner TEXT NOT NULL, "
                "event_id TEXT UNIQUE, published BOOLEAN NOT NULL, "
                "created_at TIMESTAMPTZ NOT NULL, record JSONB NOT NULL, reportable BOOLEAN)"
            )
            await conn.execute(
                "ALTER TABLE pas_runner_runs ADD COLUMN IF NOT EXISTS reportable BOOLEAN"
            )
            await conn.execute(
                "UPDATE pas_runner_runs SET reportable = (event_id IS NOT NULL) "
                "WHERE reportable IS NULL"
            )
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS pas_runner_runs_by_status "
                "ON pas_runner_runs (status, owner)"
            )
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS pas_runner_runs_by_created "
                "ON pas_runner_runs (created_at)"
            )

    async def close(self) -> None:
        """The pool belongs to whoever opened it (see ``persistence.py``)."""

    @staticmethod
    def _row(record: RunRecord) -> tuple[Any, ...]:
        run = record.run
        return (
            run.run_id,
            run.workflow_id,
            run.status,
            record.owner,
            run.event_id,
            record.reported,
            run.created_at,
            _encode(record).decode(),
            record.report,
        )

    async def create(self, record: RunRecord) -> None:
        import psycopg  # noqa: PLC0415  (optional extra: pas[postgres])

        async with self._pool.connection() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO pas_runner_runs ({_COLUMNS}) "  # noqa: S608 (fixed columns)
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    self._row(record),
                )
            except psycopg.errors.UniqueViolation as exc:
                raise RunConflict(f"run id {record.run.run_id!r} is taken") from exc

    async def create_for_event(self, record: RunRecord) -> tuple[RunRecord, bool]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"INSERT INTO pas_runner_runs ({_COLUMNS}) "  # noqa: S608 (fixed columns)
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                self._row(record),
            )
            if cursor.rowcount == 1:
                return record, True
            cursor = await conn.execute(
                "SELECT record::text AS record FROM pas_runner_runs WHERE event_id = %s",
                (record.run.event_id,),
            )
            row = await cursor.fetchone()
        assert row is not None, "a conflicting event id must have its run"
        return _decode(row["record"]), False

    async def save(self, record: RunRecord) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE pas_runner_runs SET status = %s, owner = %s, published = %s, "
                "reportable = %s, record = %s::jsonb WHERE run_id = %s",
                (
                    record.run.status,
                    record.owner,
                    record.reported,
                    record.report,
                    _encode(record).decode(),
                    record.run.run_id,
                ),
            )

    async def _select(self, where: str, args: tuple[Any, ...]) -> list[RunRecord]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT record::text AS record FROM pas_runner_runs {where}",  # noqa: S608 (fixed clauses; values are bound)
                args,
            )
            rows = await cursor.fetchall()
        return [_decode(row["record"]) for row in rows]

    async def get(self, run_id: str) -> RunRecord | None:
        found = await self._select("WHERE run_id = %s", (run_id,))
        return found[0] if found else None

    async def recent(
        self, *, workflow_id: str | None, status: str | None, limit: int
    ) -> list[RunRecord]:
        return await self._select(
            "WHERE (%s::text IS NULL OR workflow_id = %s) AND (%s::text IS NULL OR status = %s) "
            "ORDER BY created_at DESC LIMIT %s",
            (workflow_id, workflow_id, status, status, limit),
        )

    async def unfinished(self, owner: str) -> list[RunRecord]:
        return await self._select(
            "WHERE status IN (%s, %s) AND owner = %s ORDER BY created_at", (*_UNFINISHED, owner)
        )

    async def unreported(self) -> list[RunRecord]:
        return await self._select(
            "WHERE reportable AND NOT published AND status IN (%s, %s, %s) ORDER BY created_at",
            _REPORTABLE,
        )
