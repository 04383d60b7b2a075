"""Run records in PostgreSQL (``RUNNER_CHECKPOINT_DSN``), next to the LangGraph checkpoints.

The protocol, the record, the lease rule and the columns are the SQLite store's (``store.py``,
whose docstring says what a record, the outbox of outcomes and a lease are). Here a claim locks
the rows it picks (``FOR UPDATE SKIP LOCKED``) and leases are timed by the server's clock
(``now()``), one clock for every replica. psycopg (optional extra ``pas[postgres]``) is imported
only where its error class is needed, so this module loads without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.langgraph_runner.errors import RunConflict
from services.langgraph_runner.store import (
    ENDED_CLAIM_BATCH,
    REPORTABLE_STATUSES,
    RUN_COLUMNS,
    UNFINISHED_STATUSES,
    Claimed,
    RunRecord,
    decode_record,
    encode_record,
    holds_lease,
)

_PG_LEASE = "CASE WHEN %s THEN now() + make_interval(secs => %s) END"
"""The lease a PostgreSQL write gives (bound: whether the run holds one, the TTL)."""
_PG_INSERT = (
    f"INSERT INTO pas_runner_runs ({RUN_COLUMNS}) "  # noqa: S608 (fixed columns)
    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, {_PG_LEASE})"
)

# Fenced: only the owner writes while its lease lives; and, when a revision is bound, only
# over that revision (see ``store.py``).
_PG_SAVE = (
    "UPDATE pas_runner_runs SET status = %s, owner = %s, published = %s, reportable = %s, "  # noqa: S608 (fixed clauses; values are bound)
    f"record = %s::jsonb, lease_expires_at = {_PG_LEASE}, revision = revision + 1 "
    "WHERE run_id = %s "
    "AND (owner = %s OR lease_expires_at IS NULL OR lease_expires_at < now()) "
    "AND (%s::bigint IS NULL OR revision = %s)"
)
_PG_READ = "SELECT record::text AS record, revision FROM pas_runner_runs"
"""What a read selects: the record and its revision (see ``store.py``)."""


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
                "created_at TIMESTAMPTZ NOT NULL, record JSONB NOT NULL, reportable BOOLEAN, "
                "lease_expires_at TIMESTAMPTZ, revision BIGINT NOT NULL DEFAULT 0)"
            )
            await conn.execute(
                "ALTER TABLE pas_runner_runs ADD COLUMN IF NOT EXISTS reportable BOOLEAN"
            )
            await conn.execute(
                "ALTER TABLE pas_runner_runs ADD COLUMN IF NOT EXISTS lease_expires_at TIMESTAMPTZ"
            )
            await conn.execute(
                "ALTER TABLE pas_runner_runs "
                "ADD COLUMN IF NOT EXISTS revision BIGINT NOT NULL DEFAULT 0"
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
                (*UNFINISHED_STATUSES, *REPORTABLE_STATUSES),
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
            encode_record(record).decode(),
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
                f"{_PG_READ} WHERE event_id = %s",
                (record.run.event_id,),
            )
            row = await cursor.fetchone()
        assert row is not None, "a conflicting event id must have its run"
        return decode_record(row["record"], row["revision"]), False

    async def save(self, record: RunRecord, *, from_revision: int | None = None) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _PG_SAVE,
                (
                    record.run.status,
                    record.owner,
                    record.reported,
                    record.report,
                    encode_record(record).decode(),
                    holds_lease(record),
                    self._lease_ttl_s,
                    record.run.run_id,
                    record.owner,
                    from_revision,
                    from_revision,
                ),
            )
            return bool(cursor.rowcount == 1)

    async def _select(self, where: str, args: tuple[Any, ...]) -> list[RunRecord]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(f"{_PG_READ} {where}", args)
            rows = await cursor.fetchall()
        return [decode_record(row["record"], row["revision"]) for row in rows]

    async def get(self, run_id: str) -> RunRecord | None:
        found = await self._select("WHERE run_id = %s", (run_id,))
        return found[0] if found else None

    async def for_event(self, event_id: str) -> RunRecord | None:
        found = await self._select("WHERE event_id = %s", (event_id,))
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
                (self._lease_ttl_s, owner, *UNFINISHED_STATUSES, list(running)),
            )
            rows = await cursor.fetchall()
        return {row["run_id"] for row in rows}

    async def claim(self, owner: str, *, limit: int, own_too: bool = False) -> list[Claimed]:
        # The rows are locked as they are picked; a replica claiming at the same moment skips
        # them (and finds them leased once this one commits).
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "WITH unfinished AS (SELECT run_id, owner FROM pas_runner_runs "
                "WHERE status = ANY(%(unfinished)s) AND (lease_expires_at < now() "
                "OR (%(own_too)s AND owner = %(owner)s AND lease_expires_at IS NOT NULL)) "
                "ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
                "ended AS (SELECT run_id, owner FROM pas_runner_runs "
                "WHERE status <> ALL(%(unfinished)s) AND lease_expires_at < now() "
                "ORDER BY created_at LIMIT %(ended_limit)s FOR UPDATE SKIP LOCKED), "
                "due AS (SELECT run_id, owner AS previous_owner FROM unfinished "
                "UNION ALL SELECT run_id, owner FROM ended) "
                "UPDATE pas_runner_runs AS runs SET owner = %(owner)s, "
                "lease_expires_at = now() + make_interval(secs => %(ttl)s), "
                "record = jsonb_set(runs.record, '{owner}', to_jsonb(%(owner)s::text)), "
                "revision = runs.revision + 1 "
                "FROM due WHERE runs.run_id = due.run_id "
                "RETURNING due.previous_owner, runs.record::text AS record, runs.revision",
                {
                    "owner": owner,
                    "own_too": own_too,
                    "limit": limit,
                    "ended_limit": ENDED_CLAIM_BATCH,
                    "unfinished": list(UNFINISHED_STATUSES),
                    "ttl": self._lease_ttl_s,
                },
            )
            rows = await cursor.fetchall()
        claimed = [
            Claimed(decode_record(row["record"], row["revision"]), row["previous_owner"])
            for row in rows
        ]
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
            (*REPORTABLE_STATUSES, owner, owner),
        )
