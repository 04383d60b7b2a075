"""Where run records survive restarts: one small protocol, SQLite and PostgreSQL backends.

A record is the run's public status plus what only the runner needs (its owner, whether its
outcome is to be reported and was, the trigger's trace headers). Kafka-triggered runs carry
their ``event_id`` in a unique column: that is the dedupe, so an event delivered twice (or
again after a restart) finds the run it already started.

The outbox of outcomes (``outcomes.py``) is a query: runs that ended, are ``reportable`` and
not ``published`` (reported). ``reportable`` came with REST-started runs being reported too;
a store written before it gets the column at open, set for its Kafka-triggered runs only (the
ones that were reported then), so that old REST-started runs are not reported now.

Leases (replicas on one store): a run that needs a process (``pending`` or ``running``, or
ended and not reported yet) is held by its ``owner`` until ``lease_expires_at``; every other
run (interrupted, waiting for a person; ended and reported) has no lease and belongs to no
process. The owner renews all its leases in one statement (:meth:`RunStore.renew`); any
replica claims runs whose lease expired (:meth:`RunStore.claim`, atomic: a compare-and-set
per row on SQLite, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL). A save is fenced: it writes only
while the writer owns the run or nobody holds a live lease on it, so a replica that lost a run
to another cannot overwrite the new owner's progress. PostgreSQL times leases by its own clock
(``now()``), one clock for every replica; SQLite (one host) by the process's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import msgspec

from libs.common.schemas.workflows import TERMINAL_STATUSES, RunStatus
from services.langgraph_runner.errors import RunConflict

_UNFINISHED = ("pending", "running")
_REPORTABLE = ("success", "error", "cancelled")
_PG_LEASE = "CASE WHEN %s THEN now() + make_interval(secs => %s) END"
"""The lease a PostgreSQL write gives (bound: whether the run holds one, the TTL)."""
_COLUMNS = (
    "run_id, workflow_id, status, owner, event_id, published, created_at, record, reportable, "
    "lease_expires_at"
)


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


def holds_lease(record: RunRecord) -> bool:
    """Whether the run needs a process: to run it (pending, running) or to report its end.
    An interrupted run waits for a person and belongs to no process: whichever replica is
    asked to resume it takes it."""
    return record.run.status in _UNFINISHED or record.awaits_report


class Claimed(msgspec.Struct, frozen=True):
    """A run taken by :meth:`RunStore.claim` (its record now owned by the claimer), and whom
    it was taken from."""

    record: RunRecord
    previous_owner: str


class RunStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, record: RunRecord) -> None:
        """Insert a new run; :class:`RunConflict` if its id is taken."""
        ...

    async def create_for_event(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Insert unless a run for the record's ``event_id`` exists: (that run, False)."""
        ...

    async def save(self, record: RunRecord) -> bool:
        """Write the record (its owner's lease renewed while it holds one, else cleared);
        ``False`` if another replica holds a live lease on the run (nothing written)."""
        ...

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def recent(
        self, *, workflow_id: str | None, status: str | None, limit: int
    ) -> list[RunRecord]:
        """Newest first."""
        ...

    async def renew(self, owner: str, running: Iterable[str]) -> set[str]:
        """Extend the leases ``owner`` holds by the TTL, in one statement: of the runs it has
        ``running`` and of those it is to report; the run ids. An unfinished run it does not
        run (its task failed) is not renewed: it expires and is taken over."""
        ...

    async def claim(self, owner: str, *, limit: int, own_too: bool = False) -> list[Claimed]:
        """Take up to ``limit`` runs whose lease expired, oldest first (with ``own_too``,
        also those leased to ``owner`` itself: a replica starting again under its name)."""
        ...

    async def release(self, owner: str) -> int:
        """Let go of every lease ``owner`` holds (graceful shutdown): claimable at once."""
        ...

    async def unreported(self, owner: str | None = None) -> list[RunRecord]:
        """Runs that ended and are to be reported, not reported yet (of ``owner`` only, when
        given): oldest first."""
        ...


def _columns(record: RunRecord, lease_expires_at: float | None) -> tuple[Any, ...]:
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
        lease_expires_at,
    )


class SQLiteRunStore:
    """The default: one SQLite file in WAL mode, one connection, writes serialised. Leases
    are Unix times (the file is shared by processes of one host at most)."""

    def __init__(self, path: str, *, lease_ttl_s: float = 20.0) -> None:
        self._path = path
        self._lease_ttl_s = lease_ttl_s
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
            "reportable INTEGER, lease_expires_at REAL)"
        )
        async with db.execute("PRAGMA table_info(runs)") as rows:
            columns = {row[1] async for row in rows}
        if "reportable" not in columns:
            await db.execute("ALTER TABLE runs ADD COLUMN reportable INTEGER")
        if "lease_expires_at" not in columns:
            await db.execute("ALTER TABLE runs ADD COLUMN lease_expires_at REAL")
        await db.execute(
            "UPDATE runs SET reportable = (event_id IS NOT NULL) WHERE reportable IS NULL"
        )
        # Runs stored before leases that need a process: claimable at once.
        await db.execute(
            "UPDATE runs SET lease_expires_at = 0 WHERE lease_expires_at IS NULL AND "
            "(status IN (?, ?) OR (reportable = 1 AND published = 0 AND status IN (?, ?, ?)))",
            (*_UNFINISHED, *_REPORTABLE),
        )
        await db.execute(
            "CREATE INDEX IF NOT EXISTS runs_by_lease ON runs (lease_expires_at) "
            "WHERE lease_expires_at IS NOT NULL"
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

    def _lease(self, record: RunRecord) -> float | None:
        return time.time() + self._lease_ttl_s if holds_lease(record) else None

    async def create(self, record: RunRecord) -> None:
        async with self._lock:
            try:
                await self._db.execute(
                    f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (fixed columns)
                    _columns(record, self._lease(record)),
                )
            except aiosqlite.IntegrityError as exc:
                raise RunConflict(f"run id {record.run.run_id!r} is taken") from exc

    async def create_for_event(self, record: RunRecord) -> tuple[RunRecord, bool]:
        async with self._lock:
            cursor = await self._db.execute(
                f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 (fixed columns)
                "ON CONFLICT (event_id) DO NOTHING",
                _columns(record, self._lease(record)),
            )
            if cursor.rowcount == 1:
                return record, True
            async with self._db.execute(
                "SELECT record FROM runs WHERE event_id = ?", (record.run.event_id,)
            ) as rows:
                row = await rows.fetchone()
        assert row is not None, "a conflicting event id must have its run"
        return _decode(row[0]), False

    async def save(self, record: RunRecord) -> bool:
        async with self._lock:
            cursor = await self._db.execute(
                "UPDATE runs SET status = ?, owner = ?, published = ?, reportable = ?, record = ?, "
                "lease_expires_at = ? WHERE run_id = ? "
                "AND (owner = ? OR lease_expires_at IS NULL OR lease_expires_at < ?)",
                (
                    record.run.status,
                    record.owner,
                    record.reported,
                    record.report,
                    _encode(record),
                    self._lease(record),
                    record.run.run_id,
                    record.owner,
                    time.time(),
                ),
            )
            return cursor.rowcount == 1

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

    async def renew(self, owner: str, running: Iterable[str]) -> set[str]:
        async with (
            self._lock,
            self._db.execute(
                "UPDATE runs SET lease_expires_at = ? "
                "WHERE owner = ? AND lease_expires_at IS NOT NULL "
                "AND (status NOT IN (?, ?) OR run_id IN (SELECT value FROM json_each(?))) "
                "RETURNING run_id",
                (
                    time.time() + self._lease_ttl_s,
                    owner,
                    *_UNFINISHED,
                    msgspec.json.encode(list(running)).decode(),
                ),
            ) as rows,
        ):
            return {row[0] async for row in rows}

    async def claim(self, owner: str, *, limit: int, own_too: bool = False) -> list[Claimed]:
        async with self._lock:
            now = time.time()
            async with self._db.execute(
                "SELECT owner, lease_expires_at, record FROM runs WHERE lease_expires_at < ? "
                "OR (? AND owner = ? AND lease_expires_at IS NOT NULL) "
                "ORDER BY created_at LIMIT ?",
                (now, own_too, owner, limit),
            ) as rows:
                due = [tuple(row) async for row in rows]
            claimed: list[Claimed] = []
            for previous_owner, lease, stored in due:
                record = msgspec.structs.replace(_decode(stored), owner=owner)
                # Compare-and-set: another process on the file may have claimed it since.
                cursor = await self._db.execute(
                    "UPDATE runs SET owner = ?, lease_expires_at = ?, record = ? "
                    "WHERE run_id = ? AND owner = ? AND lease_expires_at = ?",
                    (
                        owner,
                        now + self._lease_ttl_s,
                        _encode(record),
                        record.run.run_id,
                        previous_owner,
                        lease,
                    ),
                )
                if cursor.rowcount == 1:
                    claimed.append(Claimed(record, previous_owner))
            return claimed

    async def release(self, owner: str) -> int:
        async with self._lock:
            cursor = await self._db.execute(
                "UPDATE runs SET lease_expires_at = 0 "
                "WHERE owner = ? AND lease_expires_at IS NOT NULL",
                (owner,),
            )
            return cursor.rowcount

    async def unreported(self, owner: str | None = None) -> list[RunRecord]:
        return await self._select(
            "WHERE reportable = 1 AND published = 0 AND status IN (?, ?, ?) "
            "AND (? IS NULL OR owner = ?) ORDER BY created_at",
            (*_REPORTABLE, owner, owner),
        )


_PG_INSERT = (
    f"INSERT INTO pas_runner_runs ({_COLUMNS}) "  # noqa: S608 (fixed columns)
    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, {_PG_LEASE})"
)

# Fenced: only the owner writes while its lease lives (see the module's docstring).
_PG_SAVE = (
    "UPDATE pas_runner_runs SET status = %s, owner = %s, published = %s, reportable = %s, "  # noqa: S608 (fixed clauses; values are bound)
    f"record = %s::jsonb, lease_expires_at = {_PG_LEASE} WHERE run_id = %s "
    "AND (owner = %s OR lease_expires_at IS NULL OR lease_expires_at < now())"
)


class PostgresRunStore:
    """Run records next to the PostgreSQL checkpoints, on the same connection pool
    (psycopg, autocommit, dict rows: as AsyncPostgresSaver wants it). Leases are timed by the
    server's clock."""

    def __init__(self, pool: Any, *, lease_ttl_s: float = 20.0) -> None:
        self._pool = pool
        self._lease_ttl_s = lease_ttl_s

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
                "ALTER TABLE pas_runner_runs ADD COLUMN IF NOT EXISTS lease_expires_at TIMESTAMPTZ"
            )
            await conn.execute(
                "UPDATE pas_runner_runs SET reportable = (event_id IS NOT NULL) "
                "WHERE reportable IS NULL"
            )
            # Runs stored before leases that need a process: claimable at once.
            await conn.execute(
                "UPDATE pas_runner_runs SET lease_expires_at = to_timestamp(0) "
                "WHERE lease_expires_at IS NULL AND (status IN (%s, %s) "
                "OR (reportable AND NOT published AND status IN (%s, %s, %s)))",
                (*_UNFINISHED, *_REPORTABLE),
            )
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS pas_runner_runs_by_lease "
                "ON pas_runner_runs (lease_expires_at) WHERE lease_expires_at IS NOT NULL"
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

    def _row(self, record: RunRecord) -> tuple[Any, ...]:
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
            holds_lease(record),
            self._lease_ttl_s,
        )

    async def create(self, record: RunRecord) -> None:
        import psycopg  # noqa: PLC0415  (optional extra: pas[postgres])

        async with self._pool.connection() as conn:
            try:
                await conn.execute(_PG_INSERT, self._row(record))
            except psycopg.errors.UniqueViolation as exc:
                raise RunConflict(f"run id {record.run.run_id!r} is taken") from exc

    async def create_for_event(self, record: RunRecord) -> tuple[RunRecord, bool]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _PG_INSERT + " ON CONFLICT (event_id) DO NOTHING", self._row(record)
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

    async def save(self, record: RunRecord) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _PG_SAVE,
                (
                    record.run.status,
                    record.owner,
                    record.reported,
                    record.report,
                    _encode(record).decode(),
                    holds_lease(record),
                    self._lease_ttl_s,
                    record.run.run_id,
                    record.owner,
                ),
            )
            return bool(cursor.rowcount == 1)

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

    async def renew(self, owner: str, running: Iterable[str]) -> set[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE pas_runner_runs SET lease_expires_at = now() + make_interval(secs => %s) "
                "WHERE owner = %s AND lease_expires_at IS NOT NULL "
                "AND (status NOT IN (%s, %s) OR run_id = ANY(%s)) RETURNING run_id",
                (self._lease_ttl_s, owner, *_UNFINISHED, list(running)),
            )
            rows = await cursor.fetchall()
        return {row["run_id"] for row in rows}

    async def claim(self, owner: str, *, limit: int, own_too: bool = False) -> list[Claimed]:
        # The rows are locked as they are picked; a replica claiming at the same moment skips
        # them (and finds them leased once this one commits).
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "WITH due AS (SELECT run_id, owner AS previous_owner FROM pas_runner_runs "
                "WHERE lease_expires_at < now() "
                "OR (%(own_too)s AND owner = %(owner)s AND lease_expires_at IS NOT NULL) "
                "ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "UPDATE pas_runner_runs AS runs SET owner = %(owner)s, "
                "lease_expires_at = now() + make_interval(secs => %(ttl)s), "
                "record = jsonb_set(runs.record, '{owner}', to_jsonb(%(owner)s::text)) "
                "FROM due WHERE runs.run_id = due.run_id "
                "RETURNING due.previous_owner, runs.record::text AS record",
                {"owner": owner, "own_too": own_too, "limit": limit, "ttl": self._lease_ttl_s},
            )
            rows = await cursor.fetchall()
        claimed = [Claimed(_decode(row["record"]), row["previous_owner"]) for row in rows]
        return sorted(claimed, key=lambda found: found.record.run.created_at)

    async def release(self, owner: str) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE pas_runner_runs SET lease_expires_at = to_timestamp(0) "
                "WHERE owner = %s AND lease_expires_at IS NOT NULL",
                (owner,),
            )
            return int(cursor.rowcount)

    async def unreported(self, owner: str | None = None) -> list[RunRecord]:
        return await self._select(
            "WHERE reportable AND NOT published AND status IN (%s, %s, %s) "
            "AND (%s::text IS NULL OR owner = %s) ORDER BY created_at",
            (*_REPORTABLE, owner, owner),
        )
