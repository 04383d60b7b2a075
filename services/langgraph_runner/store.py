"""Where run records survive restarts: one small protocol and its SQLite backend (the default);
the PostgreSQL backend is ``postgres_store.py``.

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

Revisions: every write of a record (a save, a claim) counts its ``revision`` up by one. A save
may name the revision it was decided on (``from_revision``): written only if the stored record
is still that one (compare-and-set). A resume or a cancel decides on the record it read, and an
interrupted run has no lease to fence it: without this, a cancel and a resume of it (on one
replica or two) would both be written, the later one undoing the other; and a resume read
before the run was resumed elsewhere and interrupted again (the same status, a new question)
would answer the new question with the answer meant for the old one. The revision lives in its
own column; the copy inside the stored JSON is whatever the writer held and is not read. A
store written before revisions gets the column at open, every run at revision 0.

The record, its encoding, the lease rule and the table's columns are here, shared by both
backends, so that a run is stored alike whichever one holds it; they take the module just past
400 lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import msgspec

from libs.common.schemas.empty_stops import decode_dropping_empty_stops
from libs.common.schemas.workflows import TERMINAL_STATUSES, RunStatus
from services.langgraph_runner.errors import RunConflict

UNFINISHED_STATUSES = ("pending", "running")
REPORTABLE_STATUSES = ("success", "error", "cancelled")
ENDED_CLAIM_BATCH = 1000
"""The most ended runs one claim takes (its statement stays short on a large backlog: the
lease keeper claims again while a claim comes back full)."""
# Both backends' tables, in the order a backend's row tuple gives the values.
RUN_COLUMNS = (
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
    revision: int = 0
    """The stored record's revision when it was read (the store's ``revision`` column, counted
    up by every write; see the module's docstring): what a conditional save compares. A copy
    held in memory while it is written on (a run's task) is not kept at it."""

    def __post_init__(self) -> None:
        # Records stored before ``report`` existed: their Kafka-triggered runs were reported.
        if self.run.event_id is not None:
            self.report = True

    @property
    def awaits_report(self) -> bool:
        """Ended, to be reported, and not reported yet."""
        return self.report and not self.reported and self.run.status in TERMINAL_STATUSES


encode_record = msgspec.json.Encoder().encode
_record_decoder = msgspec.json.Decoder(RunRecord)


def decode_record(stored: bytes | str, revision: int) -> RunRecord:
    """A stored record at ``revision`` (its column); one whose run was started with an empty
    stop sequence (taken until 2026-12-07) is read without it, as a version is
    (``empty_stops.py``): it keeps reading, and a resumed run no longer passes it to its LLM
    calls."""
    record, _ = decode_dropping_empty_stops(stored, _record_decoder, "run", "parameters")
    record.revision = revision
    return record


def holds_lease(record: RunRecord) -> bool:
    """Whether the run needs a process: to run it (pending, running) or to report its end.
    An interrupted run waits for a person and belongs to no process: whichever replica is
    asked to resume it takes it."""
    return record.run.status in UNFINISHED_STATUSES or record.awaits_report


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

    async def for_event(self, event_id: str) -> RunRecord | None:
        """The run an event with ``event_id`` started, if one did."""
        ...

    async def save(self, record: RunRecord, *, from_revision: int | None = None) -> bool:
        """Write the record (its owner's lease renewed while it holds one, else cleared; its
        revision counted up); ``False`` if another replica holds a live lease on the run, or,
        with ``from_revision``, if the stored record's revision is no longer that: it was
        written since it was read (nothing written)."""
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
        """Take runs whose lease expired, oldest first: up to ``limit`` unfinished ones (with
        ``own_too``, also those leased to ``owner`` itself: a replica starting again under its
        name), and up to :data:`ENDED_CLAIM_BATCH` ended ones, whose outcome is to be
        reported. These need no slot: a replica busy with its own runs still takes a dead
        one's reports, and they never keep its unfinished runs waiting."""
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
        encode_record(record),
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
            "reportable INTEGER, lease_expires_at REAL, revision INTEGER NOT NULL DEFAULT 0)"
        )
        async with db.execute("PRAGMA table_info(runs)") as rows:
            columns = {row[1] async for row in rows}
        if "reportable" not in columns:
            await db.execute("ALTER TABLE runs ADD COLUMN reportable INTEGER")
        if "lease_expires_at" not in columns:
            await db.execute("ALTER TABLE runs ADD COLUMN lease_expires_at REAL")
        if "revision" not in columns:
            await db.execute("ALTER TABLE runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
        await db.execute(
            "UPDATE runs SET reportable = (event_id IS NOT NULL) WHERE reportable IS NULL"
        )
        # Runs stored before leases that need a process: claimable at once.
        await db.execute(
            "UPDATE runs SET lease_expires_at = 0 WHERE lease_expires_at IS NULL AND "
            "(status IN (?, ?) OR (reportable = 1 AND published = 0 AND status IN (?, ?, ?)))",
            (*UNFINISHED_STATUSES, *REPORTABLE_STATUSES),
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
                    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (fixed columns)
                    _columns(record, self._lease(record)),
                )
            except aiosqlite.IntegrityError as exc:
                raise RunConflict(f"run id {record.run.run_id!r} is taken") from exc

    async def create_for_event(self, record: RunRecord) -> tuple[RunRecord, bool]:
        async with self._lock:
            cursor = await self._db.execute(
                f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 (fixed columns)
                "ON CONFLICT (event_id) DO NOTHING",
                _columns(record, self._lease(record)),
            )
            if cursor.rowcount == 1:
                return record, True
            rows = list(
                await self._db.execute_fetchall(
                    "SELECT record, revision FROM runs WHERE event_id = ?", (record.run.event_id,)
                )
            )
        assert rows, "a conflicting event id must have its run"
        return decode_record(*rows[0]), False

    async def save(self, record: RunRecord, *, from_revision: int | None = None) -> bool:
        async with self._lock:
            cursor = await self._db.execute(
                "UPDATE runs SET status = ?, owner = ?, published = ?, reportable = ?, record = ?, "
                "lease_expires_at = ?, revision = revision + 1 WHERE run_id = ? "
                "AND (owner = ? OR lease_expires_at IS NULL OR lease_expires_at < ?) "
                "AND (? IS NULL OR revision = ?)",
                (
                    record.run.status,
                    record.owner,
                    record.reported,
                    record.report,
                    encode_record(record),
                    self._lease(record),
                    record.run.run_id,
                    record.owner,
                    time.time(),
                    from_revision,
                    from_revision,
                ),
            )
            return cursor.rowcount == 1

    async def _select(self, where: str, args: Iterable[Any]) -> list[RunRecord]:
        # One round trip to the database's thread; a cursor (executed, read in chunks until
        # one comes back empty, closed) is four, and the bridge reads a run three times an event.
        rows = await self._db.execute_fetchall(
            f"SELECT record, revision FROM runs {where}",  # noqa: S608 (fixed clauses; values are bound)
            tuple(args),
        )
        return [decode_record(*row) for row in rows]

    async def get(self, run_id: str) -> RunRecord | None:
        found = await self._select("WHERE run_id = ?", (run_id,))
        return found[0] if found else None

    async def for_event(self, event_id: str) -> RunRecord | None:
        found = await self._select("WHERE event_id = ?", (event_id,))
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
        async with self._lock:
            rows = await self._db.execute_fetchall(
                "UPDATE runs SET lease_expires_at = ? "
                "WHERE owner = ? AND lease_expires_at IS NOT NULL "
                "AND (status NOT IN (?, ?) OR run_id IN (SELECT value FROM json_each(?))) "
                "RETURNING run_id",
                (
                    time.time() + self._lease_ttl_s,
                    owner,
                    *UNFINISHED_STATUSES,
                    msgspec.json.encode(list(running)).decode(),
                ),
            )
            return {row[0] for row in rows}

    async def claim(self, owner: str, *, limit: int, own_too: bool = False) -> list[Claimed]:
        async with self._lock:
            now = time.time()
            unfinished = await self._db.execute_fetchall(
                "SELECT owner, lease_expires_at, record, revision FROM runs WHERE status IN (?, ?) "
                "AND (lease_expires_at < ? OR (? AND owner = ? AND lease_expires_at IS NOT NULL)) "
                "ORDER BY created_at LIMIT ?",
                (*UNFINISHED_STATUSES, now, own_too, owner, limit),
            )
            ended = await self._db.execute_fetchall(
                "SELECT owner, lease_expires_at, record, revision FROM runs "
                "WHERE status NOT IN (?, ?) "
                "AND lease_expires_at < ? ORDER BY created_at LIMIT ?",
                (*UNFINISHED_STATUSES, now, ENDED_CLAIM_BATCH),
            )
            claimed: list[Claimed] = []
            for previous_owner, lease, stored, revision in [*unfinished, *ended]:
                record = msgspec.structs.replace(decode_record(stored, revision + 1), owner=owner)
                # Compare-and-set: another process on the file may have claimed, renewed or
                # written it since.
                cursor = await self._db.execute(
                    "UPDATE runs SET owner = ?, lease_expires_at = ?, record = ?, "
                    "revision = revision + 1 "
                    "WHERE run_id = ? AND owner = ? AND lease_expires_at = ? AND revision = ?",
                    (
                        owner,
                        now + self._lease_ttl_s,
                        encode_record(record),
                        record.run.run_id,
                        previous_owner,
                        lease,
                        revision,
                    ),
                )
                if cursor.rowcount == 1:
                    claimed.append(Claimed(record, previous_owner))
        return sorted(claimed, key=lambda found: found.record.run.created_at)

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
            (*REPORTABLE_STATUSES, owner, owner),
        )
