"""The consumer hands DuckDB the next batch while one is being stored, and never commits past a
batch that is not stored yet: a real broker, the real DuckDB store and consumer, in one process.
The store is DuckDB itself, holding its first usage write until the test lets it go, so that the
second batch is stored before the first."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.usage import UsageEvent
from services.analytics.consumer import EventConsumer
from services.analytics.duckdb_store import DuckDBStore
from services.analytics.ingest import Ingestor
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import TimeWindow
from tests.analytics.conftest import known_events, produce, utc_now, wait_until

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


async def _stored_calls(store: DuckDBStore) -> int:
    now = utc_now()
    lines = await store.costs(TimeWindow(now - timedelta(days=1), now), "model")
    return sum(line.llm_calls for line in lines)


async def test_a_second_batch_is_stored_meanwhile_and_nothing_is_committed_past_the_first(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    topic, dlq = f"usage-{run}", f"dlq-{run}"
    await ensure_topics(kafka_bootstrap, {topic: 1, dlq: 1})
    usage, _ = known_events(utc_now(), count=3 * BATCH, runs=0)
    await produce(kafka_bootstrap, topic, [json.dumps(event).encode() for event in usage])
    settings = AnalyticsSettings(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"analytics-{run}",
        usage_topic=topic,
        workflow_results_topic="",
        llm_results_topic="",
        documents_dlq_topic="",
        dlq_topic=dlq,
        batch_max=BATCH,
        db_path=str(tmp_path / "analytics.duckdb"),
        raw_retention_s=0,
        log_level="WARNING",
    )
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
