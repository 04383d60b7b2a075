"""The consumer hands DuckDB the next batch while one is being stored, and never commits past a
batch that is not stored yet: a real broker, the real DuckDB store and consumer, in one process.
The store is DuckDB itself, holding its first usage write until the test lets it go, so that the
second batch is stored before the first.

A record the store refuses for what it holds (a table's CHECK constraint stands for a refusal
nobody foresaw) goes to the DLQ with the store's error, and the rest of its batch is stored and
committed, on either store; a store that is away is tried again, nothing dead-lettered."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import psycopg
import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from litestar import Litestar
from litestar.testing import AsyncTestClient

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.documents import DeadLetter
from libs.common.schemas.usage import UsageEvent
from services.analytics.app import create_app
from services.analytics.consumer import EventConsumer
from services.analytics.duckdb_schema import SCHEMA
from services.analytics.duckdb_store import DuckDBStore
from services.analytics.duckdb_usage import USAGE_TABLE
from services.analytics.ingest import Ingestor
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.postgres_store import PostgresStore
from services.analytics.queries import RUNS, USAGE
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore, TimeWindow
from tests.analytics.conftest import (
    NO_POSTGRES,
    PG_OBJECTS,
    POSTGRES_DSN,
    known_events,
    produce,
    read_topic,
    run_event,
    usage_event,
    utc_now,
    wait_until,
)
from tests.support.metrics_text import sample_value

BATCH = 10


class HeldStore(DuckDBStore):
    """The DuckDB store, its first usage write held until ``release`` is set."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.release = asyncio.Event()
        self.handed_over = 0

    async def insert_usage(self, events: Sequence[UsageEvent]) -> pa.Table:
        self.handed_over += 1
        if self.handed_over == 1:
            await self.release.wait()
        return await super().insert_usage(events)


async def _stored_calls(store: AnalyticsStore) -> int:
    now = utc_now()
    lines = await store.costs(TimeWindow(now - timedelta(days=1), now), "model")
    return sum(line.llm_calls for line in lines)


def _settings(bootstrap: str, run: str, db_path: Path, **fields: Any) -> AnalyticsSettings:
    """The consumer's settings for topics and a group named for ``run``; ``fields`` change
    them."""
    settings = AnalyticsSettings(
        bootstrap_servers=bootstrap,
        group_id=f"analytics-{run}",
        usage_topic=f"usage-{run}",
        workflow_results_topic=f"wf-results-{run}",
        llm_results_topic="",
        documents_dlq_topic="",
        dlq_topic=f"dlq-{run}",
        db_path=str(db_path),
        raw_retention_s=0,
        log_level="WARNING",
    )
    return msgspec.structs.replace(settings, **fields)


async def test_a_second_batch_is_stored_meanwhile_and_nothing_is_committed_past_the_first(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = _settings(
        kafka_bootstrap,
        run,
        tmp_path / "analytics.duckdb",
        workflow_results_topic="",
        batch_max=BATCH,
    )
    topic = settings.usage_topic
    await ensure_topics(kafka_bootstrap, {topic: 1, settings.dlq_topic: 1})
    usage, _ = known_events(utc_now(), count=3 * BATCH, runs=0)
    await produce(kafka_bootstrap, topic, [json.dumps(event).encode() for event in usage])
    store = HeldStore(settings.db_path)
    await store.open()
    metrics = AnalyticsMetrics()
    consumer = EventConsumer(settings, Ingestor(store, metrics), metrics)
    commits = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=settings.group_id)
    await commits.start()  # in the collector's group without joining it: reads its commits
    partition = TopicPartition(topic, 0)
    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    try:
        stored = await wait_until(lambda: _stored_calls(store), lambda calls: calls >= BATCH)
        await asyncio.sleep(1.0)  # time for a third batch to be handed over, if it were
        held_committed = await commits.committed(partition)
        held_handed_over = store.handed_over

        store.release.set()
        committed = await wait_until(
            lambda: commits.committed(partition), lambda offset: offset == len(usage)
        )
        final = await _stored_calls(store)
    finally:
        store.release.set()
        stop.set()
        await consuming
        await commits.stop()
        await store.close()

    assert stored == BATCH  # the second batch, while the first is held
    assert held_handed_over == 2  # no more than two batches handed over at once
    assert held_committed is None  # not even the stored second batch: the first comes first
    assert committed == len(usage)
    assert final == len(usage)


# --- what the store refuses, and a store that is away ------------------------------------------

REFUSED = "refused-by-the-store"
# The store's own refusal of a value the wire types accept: a CHECK on each raw table.
USAGE_CHECK = f"model <> '{REFUSED}'"
RUNS_CHECK = f"workflow_id <> '{REFUSED}'"


@asynccontextmanager
async def _consuming(
    settings: AnalyticsSettings, store: AnalyticsStore, metrics: AnalyticsMetrics
) -> AsyncIterator[AIOKafkaConsumer]:
    """The consumer running on ``store``; yields a client in its group that reads its commits."""
    consumer = EventConsumer(settings, Ingestor(store, metrics), metrics)
    commits = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=settings.group_id
    )
    await commits.start()
    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    try:
        yield commits
    finally:
        stop.set()
        await consuming
        await commits.stop()


def _refusing(definition: str, check: str) -> str:
    """A table's definition that also refuses a row ``check`` does not hold."""
    assert definition.endswith(")"), definition
    return f"{definition[:-1]}, CHECK ({check}))"


async def _refusing_store(kind: str, db_path: Path) -> AnalyticsStore:
    """The store, open, its raw usage and run tables refusing what the checks do not hold."""
    if kind == "duckdb":
        # Made before the store opens it: the store keeps tables that exist.
        with duckdb.connect(str(db_path)) as db:
            db.execute(_refusing(USAGE_TABLE, USAGE_CHECK))
            db.execute(_refusing(next(t for t in SCHEMA if f" {RUNS} (" in t), RUNS_CHECK))
        duck = DuckDBStore(str(db_path))
        await duck.open()
        return duck
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        for statement in PG_OBJECTS:
            await conn.execute(statement)
    postgres = PostgresStore(POSTGRES_DSN)
    await postgres.open()
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute(f"ALTER TABLE {USAGE} ADD CONSTRAINT refuses CHECK ({USAGE_CHECK})")
        await conn.execute(f"ALTER TABLE {RUNS} ADD CONSTRAINT refuses CHECK ({RUNS_CHECK})")
    return postgres


def _completed(run_id: str, workflow_id: str) -> bytes:
    """A runner's ``workflow.completed`` event."""
    return msgspec.json.encode(
        {
            "event_id": f"evt-{run_id}",
            "event_type": "workflow.completed",
            "timestamp": utc_now().isoformat(),
            "workflow_id": workflow_id,
            "workflow_run_id": run_id,
            "payload": {"status": "success", "duration_ms": 5.0},
        }
    )


ON_POSTGRES = [pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES)]
STORES = ["duckdb", pytest.param("postgres", marks=ON_POSTGRES)]


@pytest.mark.parametrize("kind", STORES)
async def test_records_the_store_refuses_alone_are_dead_lettered_and_the_rest_stored(
    kafka_bootstrap: str, tmp_path: Path, kind: str
) -> None:
    """Before, the batch failed at every try and was fetched again for ever: nothing after
    the refused records was stored. On DuckDB the usage is read by Arrow (a table split in
    parts), on PostgreSQL by msgspec (events). Every record is counted once: a part holds the
    last usage records and the refused run, and its usage, stored, is written again with the
    next smaller part (counted again as duplicates, before)."""
    run = uuid.uuid4().hex[:8]
    settings = _settings(kafka_bootstrap, run, tmp_path / "analytics.duckdb")
    await ensure_topics(
        kafka_bootstrap,
        {settings.usage_topic: 1, settings.workflow_results_topic: 1, settings.dlq_topic: 1},
    )
    usage = [usage_event(utc_now(), event_id=f"u{index}") for index in range(9)]
    usage.insert(6, usage_event(utc_now(), event_id="u-refused", model=REFUSED))
    runs = [_completed(f"r{index}", "document_analysis") for index in range(3)]
    runs.insert(1, _completed("r-refused", REFUSED))
    await produce(kafka_bootstrap, settings.usage_topic, [json.dumps(e).encode() for e in usage])
    await produce(kafka_bootstrap, settings.workflow_results_topic, runs)
    store = await _refusing_store(kind, tmp_path / "analytics.duckdb")
    metrics = AnalyticsMetrics()
    ends = {
        TopicPartition(settings.usage_topic, 0): 10,
        TopicPartition(settings.workflow_results_topic, 0): 4,
    }
    try:
        async with _consuming(settings, store, metrics) as commits:
            committed = await wait_until(
                lambda: _committed(commits, list(ends)), lambda offsets: offsets == ends
            )
        letters = [
            msgspec.json.decode(value, type=DeadLetter)
            for value in await read_topic(kafka_bootstrap, settings.dlq_topic, 2)
        ]
        calls = await _stored_calls(store)
        now = utc_now()
        workflows = await store.workflow_stats(TimeWindow(now - timedelta(days=1), now))
    finally:
        if kind == "postgres":
            async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
                for statement in PG_OBJECTS:
                    await conn.execute(statement)
        await store.close()

    assert committed == ends
    assert calls == 9
    assert [(w.workflow_id, w.runs) for w in workflows] == [("document_analysis", 3)]
    refused = {(letter.topic, letter.offset): letter for letter in letters}
    assert sorted(refused) == [(settings.usage_topic, 6), (settings.workflow_results_topic, 1)]
    assert {letter.error_type for letter in letters} == {"store_refused"}
    assert {letter.attempts for letter in letters} == {1}  # the store was asked
    assert all("check" in letter.error.lower() for letter in letters), letters
    assert "u-refused" in refused[settings.usage_topic, 6].original
    assert "r-refused" in refused[settings.workflow_results_topic, 1].original
    assert _dead_lettered(metrics) == {
        (settings.usage_topic, "store_refused"): 1,
        (settings.workflow_results_topic, "store_refused"): 1,
    }
    assert _counted(metrics) == {
        ("stored", "usage"): 9,
        ("stored", "runs"): 3,
        ("duplicate", "usage"): 0,
        ("duplicate", "runs"): 0,
    }


async def _drop_postgres_tables() -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        for statement in PG_OBJECTS:
            await conn.execute(statement)


def _collector_on(kind: str, db_path: Path) -> AnalyticsSettings:
    """The collector's settings on ``kind``'s store (Kafka off: events come over HTTP)."""
    return AnalyticsSettings(
        db_path=str(db_path),
        database_url=POSTGRES_DSN if kind == "postgres" else None,
        consume=False,
        raw_retention_s=0,
        log_level="WARNING",
    )


@pytest.mark.parametrize("kind", STORES)
async def test_post_events_names_the_events_the_store_refuses_and_stores_the_rest(
    tmp_path: Path, kind: str, open_app: Callable[[Litestar], Awaitable[AsyncTestClient[Any]]]
) -> None:
    """Before, a refusal nobody foresaw was a 500, and the client could not tell what was
    stored. Every event is counted once: the refused usage event is the last of its kind, so a
    part of the batch holds it and a run the store takes; that run is stored by a write that
    fails (before, it was never counted as stored, and counted as a duplicate when the next
    part wrote it again)."""
    db_path = tmp_path / "analytics.duckdb"
    await (await _refusing_store(kind, db_path)).close()  # the refusing tables, left for the app
    now = utc_now()
    usage = [usage_event(now, event_id=f"u{index}") for index in range(5)]
    usage.append(usage_event(now, event_id="u-refused", model=REFUSED))
    runs = [run_event(now, run_id=f"r{index}") for index in range(3)]
    runs.append(run_event(now, run_id="r-refused", workflow_id=REFUSED))
    try:
        client = await open_app(create_app(_collector_on(kind, db_path)))
        first = await client.post("/events", json={"usage": usage, "runs": runs})
        again = await client.post("/events", json={"usage": usage, "runs": runs})
        calls = (await client.get("/analytics/costs")).json()["total"]["llm_calls"]
        workflows = (await client.get("/analytics/workflows")).json()["workflows"]
        metrics = (await client.get("/metrics")).text
    finally:
        if kind == "postgres":
            await _drop_postgres_tables()

    assert (first.status_code, again.status_code) == (422, 422), first.text
    problem = first.json()
    assert [(error["field"], error["source"]) for error in problem["errors"]] == [
        ("usage[5]", "body"),
        ("runs[3]", "body"),
    ]
    usage_refused, run_refused = (error["message"] for error in problem["errors"])
    assert usage_refused.startswith("usage event 'u-refused' refused by the store: "), problem
    assert run_refused.startswith("run 'r-refused' refused by the store: "), problem
    assert all("check" in message.lower() for message in (usage_refused, run_refused)), problem
    assert "and stored the other 8 (8 new, 0 already held)" in problem["detail"]
    assert f"usage[5]: {usage_refused}" in problem["detail"]
    assert f"runs[3]: {run_refused}" in problem["detail"]
    assert "and stored the other 8 (0 new, 8 already held)" in again.json()["detail"]
    assert calls == 5
    assert [(w["workflow_id"], w["runs"]) for w in workflows] == [("document_analysis", 3)]
    counted = functools.partial(sample_value, metrics)
    assert counted("pas_analytics_events_stored_total", kind="usage", source="http") == 5
    assert counted("pas_analytics_events_stored_total", kind="runs", source="http") == 3
    assert counted("workflow_executions_total", workflow_id="document_analysis") == 3
    # Only the second batch's events came twice.
    assert counted("pas_analytics_events_duplicate_total", kind="usage") == 5
    assert counted("pas_analytics_events_duplicate_total", kind="runs") == 3


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES)
async def test_post_events_answers_500_when_the_store_fails_otherwise(
    tmp_path: Path, open_app: Callable[[Litestar], Awaitable[AsyncTestClient[Any]]]
) -> None:
    """A table dropped by hand is the store's fault, not the events': a 500, the batch not
    taken apart (no event named)."""
    await _drop_postgres_tables()
    try:
        settings = _collector_on("postgres", tmp_path / "analytics.duckdb")
        client = await open_app(create_app(settings))
        async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
            await conn.execute(f"DROP TABLE {RUNS} CASCADE")
        answer = await client.post("/events", json={"runs": [run_event(utc_now())]})
    finally:
        await _drop_postgres_tables()

    assert answer.status_code == 500, answer.text
    assert "UndefinedTable" in answer.json()["detail"]
    assert "errors" not in answer.json()


class AwayStore(DuckDBStore):
    """The DuckDB store, its disk away for its first two usage writes."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.usage_writes = 0

    async def insert_usage(self, events: Sequence[UsageEvent] | pa.Table) -> pa.Table:
        self.usage_writes += 1
        if self.usage_writes <= 2:
            raise duckdb.IOException("IO Error: could not write to the file")
        return await super().insert_usage(events)


async def test_a_store_that_is_away_is_tried_again_and_nothing_is_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = _settings(
        kafka_bootstrap, run, tmp_path / "analytics.duckdb", workflow_results_topic=""
    )
    await ensure_topics(kafka_bootstrap, {settings.usage_topic: 1, settings.dlq_topic: 1})
    usage, _ = known_events(utc_now(), count=BATCH, runs=0)
    await produce(kafka_bootstrap, settings.usage_topic, [json.dumps(e).encode() for e in usage])
    store = AwayStore(settings.db_path)
    await store.open()
    metrics = AnalyticsMetrics()
    end = {TopicPartition(settings.usage_topic, 0): len(usage)}
    try:
        async with _consuming(settings, store, metrics) as commits:
            committed = await wait_until(
                lambda: _committed(commits, list(end)), lambda offsets: offsets == end
            )
        calls = await _stored_calls(store)
    finally:
        await store.close()

    assert committed == end
    assert calls == len(usage)
    assert store.usage_writes == 3  # the whole batch each time: never taken apart
    assert _dead_lettered(metrics) == {}


async def _committed(
    commits: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int | None]:
    return {tp: await commits.committed(tp) for tp in partitions}


def _dead_lettered(metrics: AnalyticsMetrics) -> dict[tuple[str, str], float]:
    """Letters counted, by topic and reason."""
    return {
        (sample.labels["topic"], sample.labels["reason"]): sample.value
        for family in metrics.dead_lettered.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def _counted(metrics: AnalyticsMetrics) -> dict[tuple[str, str], float]:
    """Events counted as stored and as duplicates, by kind (stored summed over sources)."""
    counted: dict[tuple[str, str], float] = {}
    for what, counter in (("stored", metrics.stored), ("duplicate", metrics.duplicates)):
        for family in counter.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (what, sample.labels["kind"])
                    counted[key] = counted.get(key, 0) + sample.value
    return counted
