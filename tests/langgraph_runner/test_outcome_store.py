"""The outbox of outcomes in the run store, SQLite and PostgreSQL (when PAS_TEST_POSTGRES_DSN
is set): what is to be reported and not yet is found, and survives a store written before
REST-started runs were reported (its waiting Kafka-triggered runs are still reported, its old
REST-started runs are not reported now) and before records had revisions (counted from 0, a
write over a revision read before another write refused); a dead replica's outcomes are all
taken by a live one, whatever its room, and published once each. A record written with what a
later release refuses (an empty stop sequence) still reads."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from libs.common.schemas.workflows import RunStatus, WorkflowParameters, WorkflowResult
from services.langgraph_runner.outcomes import ResultsTopic
from services.langgraph_runner.persistence import open_persistence
from services.langgraph_runner.run_records import utcnow
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.store import ENDED_CLAIM_BATCH, RunRecord, RunStore
from tests.langgraph_runner.conftest import POSTGRES_DSN, RUN_STORES, Topics, collect

GONE = "runner-gone"
OLD_SQLITE = (
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, "
    "status TEXT NOT NULL, owner TEXT NOT NULL, event_id TEXT UNIQUE, "
    "published INTEGER NOT NULL, created_at TEXT NOT NULL, record BLOB NOT NULL)"
)
OLD_POSTGRES = (
    "CREATE TABLE pas_runner_runs (run_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, "
    "status TEXT NOT NULL, owner TEXT NOT NULL, event_id TEXT UNIQUE, published BOOLEAN NOT NULL, "
    "created_at TIMESTAMPTZ NOT NULL, record JSONB NOT NULL)"
)


def ended(run_id: str, *, event_id: str | None = None, minutes_ago: int = 0) -> RunRecord:
    at = utcnow() - timedelta(minutes=minutes_ago)
    return RunRecord(
        run=RunStatus(
            run_id=run_id,
            workflow_id="probe",
            status="success",
            input={},
            created_at=at,
            updated_at=at,
            started_at=at,
            finished_at=at,
            event_id=event_id,
            workflow_run_id=f"wf-{run_id}" if event_id else None,
        ),
        owner="runner",
    )


def old_row(record: RunRecord, published: bool) -> tuple[Any, ...]:
    """The row a runner from before ``report`` wrote (its record has no such field)."""
    stored = msgspec.to_builtins(record)
    del stored["report"]
    stored["published"] = published
    run = record.run
    return (
        run.run_id,
        run.workflow_id,
        run.status,
        record.owner,
        run.event_id,
        published,
        run.created_at.isoformat(),
        msgspec.json.encode(stored).decode(),
    )


OLD_RUNS = [
    (ended("kafka-waiting", event_id="event-1", minutes_ago=3), False),
    (ended("kafka-published", event_id="event-2", minutes_ago=2), True),
    (ended("rest-old", minutes_ago=1), False),
]


async def write_old_sqlite(settings: RunnerSettings) -> None:
    with sqlite3.connect(settings.store_path) as db:
        db.execute(OLD_SQLITE)
        db.executemany(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [old_row(record, published) for record, published in OLD_RUNS],
        )


async def write_old_postgres(settings: RunnerSettings) -> None:
    import psycopg  # noqa: PLC0415

    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS pas_runner_runs")
        await conn.execute(OLD_POSTGRES)
        for record, published in OLD_RUNS:
            await conn.execute(
                "INSERT INTO pas_runner_runs VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                old_row(record, published),
            )


@pytest.fixture(params=RUN_STORES)
def backend(
    request: pytest.FixtureRequest, runner_settings: RunnerSettings
) -> tuple[RunnerSettings, Callable[[RunnerSettings], Any]]:
    if request.param == "postgres":
        on_postgres = msgspec.structs.replace(runner_settings, checkpoint_dsn=POSTGRES_DSN)
        return on_postgres, write_old_postgres
    return runner_settings, write_old_sqlite


async def unreported_ids(store: RunStore) -> list[str]:
    return [record.run.run_id for record in await store.unreported()]


async def test_a_store_from_before_keeps_reporting_only_its_kafka_runs(
    backend: tuple[RunnerSettings, Callable[[RunnerSettings], Any]],
) -> None:
    settings, write_old = backend
    Path(settings.store_path).parent.mkdir(parents=True, exist_ok=True)
    await write_old(settings)

    async with open_persistence(settings) as (_, store):
        found = await unreported_ids(store)
        waiting = await store.get("kafka-waiting")
        assert waiting is not None
        # Resumed and ended again: still to be reported (it is Kafka-triggered).
        await store.save(msgspec.structs.replace(waiting, reported=False))
        again = await unreported_ids(store)

    assert found == ["kafka-waiting"]
    assert waiting.report
    assert again == ["kafka-waiting"]


async def test_a_store_from_before_revisions_writes_only_over_the_revision_read(
    backend: tuple[RunnerSettings, Callable[[RunnerSettings], Any]],
) -> None:
    settings, write_old = backend
    Path(settings.store_path).parent.mkdir(parents=True, exist_ok=True)
    await write_old(settings)

    async with open_persistence(settings) as (_, store):
        read = await store.get("kafka-waiting")
        assert read is not None
        first = await store.save(
            msgspec.structs.replace(read, reported=True), from_revision=read.revision
        )
        # A second write decided on the same read: the record moved on since.
        second = await store.save(read, from_revision=read.revision)
        written = await store.get("kafka-waiting")
    async with open_persistence(settings) as (_, store):
        reopened = await store.get("kafka-waiting")

    assert read.revision == 0
    assert first
    assert not second
    assert written is not None
    assert written.revision == 1
    assert written.reported
    assert reopened == written  # opened again: migrated once


async def test_new_runs_are_reported_as_they_were_created_to_be(
    backend: tuple[RunnerSettings, Callable[[RunnerSettings], Any]],
) -> None:
    settings, _ = backend

    async with open_persistence(settings) as (_, store):
        await _clear(settings)
        to_report = msgspec.structs.replace(ended("rest-reported", minutes_ago=2), report=True)
        not_to_report = ended("rest-ignored", minutes_ago=1)
        await store.create(to_report)
        await store.create(not_to_report)
        before = await unreported_ids(store)
        await store.save(msgspec.structs.replace(to_report, reported=True))
        after = await unreported_ids(store)
    async with open_persistence(settings) as (_, store):
        reopened = await store.get("rest-reported")

    assert before == ["rest-reported"]
    assert after == []
    assert reopened is not None
    assert reopened.report
    assert reopened.reported


async def test_a_run_stored_with_an_empty_stop_sequence_is_read_without_it(
    backend: tuple[RunnerSettings, Callable[[RunnerSettings], Any]],
    make_runner: Callable[..., Any],
) -> None:
    """A run's parameters took ``stop: [""]`` until 2026-12-07; its record still reads."""
    settings, _ = backend
    record = ended("stopped-early")
    # Built unchecked, as a request decoded by an older release: the record it stored.
    record.run.parameters = WorkflowParameters(temperature=0.2, stop=["", "</answer>", ""])
    async with open_persistence(settings) as (_, store):
        await _clear(settings)
        await store.create(record)

    runner = await make_runner(checkpoint_dsn=settings.checkpoint_dsn)
    read = await runner.get("/runs/stopped-early")
    listed = await runner.get("/runs")

    assert read.status_code == 200, read.text
    assert read.json()["parameters"]["stop"] == ["</answer>"]
    assert read.json()["parameters"]["temperature"] == 0.2, "the rest as stored"
    assert listed.status_code == 200, listed.text
    assert [run["run_id"] for run in listed.json()["runs"]] == ["stopped-early"]


def running(run_id: str, *, minutes_ago: int) -> RunRecord:
    record = ended(run_id, minutes_ago=minutes_ago)
    return msgspec.structs.replace(
        record, run=msgspec.structs.replace(record.run, status="running", finished_at=None)
    )


async def store_of_a_dead_replica(settings: RunnerSettings, records: list[RunRecord]) -> None:
    """``records`` stored by a replica whose leases have all expired since."""
    short_leases = msgspec.structs.replace(settings, lease_ttl_s=0.05, lease_renew_s=0.01)
    async with open_persistence(short_leases) as (_, store):
        await _clear(settings)
        for record in records:
            await store.create(record)
    await asyncio.sleep(0.2)


async def test_a_claim_takes_every_ended_run_to_report_and_unfinished_ones_as_room_allows(
    backend: tuple[RunnerSettings, Callable[[RunnerSettings], Any]],
) -> None:
    settings, _ = backend
    to_report = [
        msgspec.structs.replace(ended(f"ended-{n}", minutes_ago=10 - n), report=True, owner=GONE)
        for n in range(3)
    ]
    unfinished = [
        msgspec.structs.replace(running(f"running-{n}", minutes_ago=5 - n), owner=GONE)
        for n in range(2)
    ]
    await store_of_a_dead_replica(settings, [*unfinished, *to_report])

    async with open_persistence(settings) as (_, store):
        busy = await store.claim("runner-busy", limit=0)
        spare = await store.claim("runner-spare", limit=1)
        rest = await store.claim("runner-spare", limit=5)
        nothing_left = await store.claim("runner-spare", limit=5)
        reported_by = {record.run.run_id: record.owner for record in await store.unreported()}

    # A replica with no room still takes every report (they need no slot), oldest first.
    assert [found.record.run.run_id for found in busy] == ["ended-0", "ended-1", "ended-2"]
    assert {found.previous_owner for found in busy} == {GONE}
    assert reported_by == dict.fromkeys(["ended-0", "ended-1", "ended-2"], "runner-busy")
    # Unfinished runs as room allows, oldest first; what is claimed is leased, not claimed again.
    assert [found.record.run.run_id for found in spare] == ["running-0"]
    assert [found.record.run.run_id for found in rest] == ["running-1"]
    assert nothing_left == []


async def test_a_dead_replicas_backlog_of_outcomes_is_published_once_each(
    make_runner: Callable[..., Any],
    runner_settings: RunnerSettings,
    kafka_bootstrap: str,
    topics: Topics,
) -> None:
    """More ended runs than one claim takes, more than one report batch: a replica started
    beside a dead one's store publishes every outcome once, at its start (not
    ``max_concurrent_runs`` of them every lease renewal)."""
    backlog = [
        msgspec.structs.replace(
            ended(f"backlog-{n:04d}", event_id=f"event-{n}"), report=True, owner=GONE
        )
        for n in range(ENDED_CLAIM_BATCH + ResultsTopic.batch + 1)
    ]
    await store_of_a_dead_replica(runner_settings, backlog)

    await make_runner(bootstrap_servers=kafka_bootstrap, max_concurrent_runs=1, **topics.settings())
    await collect(kafka_bootstrap, topics.results, lambda got: len(got) >= len(backlog))
    again = await collect(kafka_bootstrap, topics.results, lambda _: False, timeout_s=2)
    published = [msgspec.convert(r.value, WorkflowResult, strict=False) for r in again]

    assert sorted(result.payload.run_id for result in published) == [
        record.run.run_id for record in backlog
    ]
    assert all(r.key == r.value["workflow_run_id"] for r in again)


async def _clear(settings: RunnerSettings) -> None:
    if not settings.checkpoint_dsn:
        return  # a fresh file per test
    import psycopg  # noqa: PLC0415

    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute("DELETE FROM pas_runner_runs")
