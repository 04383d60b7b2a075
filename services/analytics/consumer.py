"""The consume loop: fetch a batch, store it, then commit its offsets; never commit first.

One loop per process in the ``pas-analytics`` group. A batch is decoded record by record
(usage records, where the store takes a table and the records allow it, go straight into
one: ``usage_json.py``); records that do not decode go to ``analytics-dlq`` with the reason
(and the broker's acknowledgement is awaited), and so do records aiokafka cannot build at all
(a header name not UTF-8: the fetch reads around them, ``libs/common/kafka/fetching.py``); the
rest are stored in one insert per kind (a record the store refuses alone, for what it holds,
goes to ``analytics-dlq`` with the store's error: ``refusals.py``); only then are the batch's
offsets committed. A crash anywhere before the commit redelivers the batch, and the store's
keys make the second delivery a no-op: at least once in, exactly once stored.

While a batch is being stored (on the store's own thread or connection), the loop fetches and
decodes the next one, and hands it over as well where the store writes batches in the order
handed over (DuckDB: its writer threads then never wait for the loop). At most
``batches_in_flight`` batches are handed over and not yet committed; each is committed when it
is stored and the batch before it is committed, so commits stay in order and never run ahead
of the store.

Tracing: a batch is handled as a whole, so it gets one CONSUMER span (``process <topic>``, or
``process`` across topics) from its decoding to its commit, which links to the context each
record's headers carry rather than taking one of them as its parent (what the messaging
conventions ask of batch processing); dead letters are PRODUCER spans under it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import TypeAlias

import msgspec
import pyarrow as pa
import stamina
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from opentelemetry import trace

from libs.common.kafka.fetching import Fetched, Fetcher
from libs.common.kafka.records import TrackAssignment, send_acknowledged, stop_producer
from libs.common.kafka.rejection import Rejection
from libs.common.kafka.tracing import finish_in, produce_span, start_batch_span
from libs.common.schemas.usage import UsageEvent, WorkflowRun
from services.analytics.decoding import (
    SKIPPED,
    TopicRole,
    Undecodable,
    decode,
    decode_usage,
    decode_usage_records,
)
from services.analytics.ingest import Ingestor, NewRows
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.refusals import Refused, count_batch, store_apart
from services.analytics.settings import AnalyticsSettings
from services.analytics.usage_json import usage_table_from_json
from services.analytics.usage_table import concat_usage, usage_table

logger = structlog.get_logger("pas.analytics.consumer")

_encode = msgspec.json.Encoder().encode
_value = attrgetter("value")
_STORE_ATTEMPTS = 5
_STORE_REFUSED = "store_refused"

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A batch's usage (events, or a usage table where the store reads one) and runs, and the
    record each came from (usage rows first, then runs), to dead-letter one the store refuses."""

    usage: list[UsageEvent] | pa.Table
    runs: list[WorkflowRun]
    records: list[Record]


def topic_roles(settings: AnalyticsSettings) -> dict[str, TopicRole]:
    """The topics consumed and what each carries (an empty name turns a topic off)."""
    roles: dict[str, TopicRole] = {
        settings.usage_topic: "usage",
        settings.workflow_results_topic: "workflow_results",
        settings.llm_results_topic: "llm_results",
        settings.documents_dlq_topic: "documents_dlq",
    }
    return {topic: role for topic, role in roles.items() if topic}


class EventConsumer:
    def __init__(
        self, settings: AnalyticsSettings, ingestor: Ingestor, metrics: AnalyticsMetrics
    ) -> None:
        self._settings = settings
        self._ingestor = ingestor
        self._metrics = metrics
        self._roles = topic_roles(settings)
        self._read_tables = ingestor.reads_usage_tables
        self.connected = False
        self.assigned: set[TopicPartition] = set()
        self.last_commit_at: datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        s = self._settings
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(s.session_timeout_s * 1000 / 4)),
            max_partition_fetch_bytes=s.fetch_partition_bytes,
        )
        fetcher = Fetcher(consumer, name="analytics consumer")
        consumer.subscribe(
            list(self._roles), listener=TrackAssignment(self.assigned, placed=fetcher.placed)
        )
        await producer.start()
        try:
            await consumer.start()
            self.connected = True
            logger.info("consuming", topics=sorted(self._roles), group=s.group_id)
            in_flight = self._ingestor.batches_in_flight
            storing: deque[asyncio.Task[None]] = deque()
            try:
                while not stop.is_set():
                    fetched = await fetcher.getmany(timeout_ms=500, max_records=s.batch_max)
                    if not fetched:
                        continue
                    records = list(chain.from_iterable(fetched.records.values()))
                    records += (item.record for item in fetched.unreadable)
                    span = start_batch_span(records, group=s.group_id)
                    try:
                        with trace.use_span(span):
                            decoded = await self._decode(producer, fetched)
                        while len(storing) >= in_flight:
                            await storing.popleft()  # stored and committed, or raises
                    except BaseException:
                        span.end()
                        raise
                    # The batch's span ends once it is committed (or failed to be).
                    previous = storing[-1] if storing else None
                    storing.append(
                        asyncio.create_task(
                            finish_in(
                                span,
                                self._store_and_commit(
                                    consumer, producer, fetched.next_offsets(), decoded, previous
                                ),
                            )
                        )
                    )
            finally:
                # Batches being stored are finished (and committed) before the consumer leaves
                # the group; if one fails, its records and those after are delivered again.
                ended = await asyncio.gather(*storing, return_exceptions=True)
                failures = [outcome for outcome in ended if isinstance(outcome, BaseException)]
                if failures:
                    raise failures[0]
        finally:
            self.connected = False
            self.assigned.clear()
            await consumer.stop()
            await stop_producer(producer)

    async def _decode(self, producer: AIOKafkaProducer, fetched: Fetched) -> _Decoded:
        """The batch's usage (events, or a usage table where the store reads one) and runs;
        what does not decode, or could not be read at all, is dead-lettered here, every letter
        sent at once (one at a time, each waited for the broker before the next, a batch of bad
        records took seconds)."""
        usage: list[UsageEvent] = []
        tables: list[pa.Table] = []
        runs: list[WorkflowRun] = []
        # The records of the tables' rows, of ``usage`` and of ``runs``, in their order.
        table_records: list[Record] = []
        usage_records: list[Record] = []
        run_records: list[Record] = []
        rejected = [(item.record, Rejection.of_unreadable(item)) for item in fetched.unreadable]
        for tp, records in fetched.records.items():
            role = self._roles[tp.topic]
            if role == "usage":
                values = list(map(_value, records))
                table = usage_table_from_json(values) if self._read_tables else None
                if table is not None:
                    tables.append(table)
                    table_records += records
                    self._metrics.usage_read.labels("arrow").inc(len(records))
                    continue
                self._metrics.usage_read.labels("msgspec").inc(len(records))
                decoded = decode_usage_records(values)
                if decoded is not None:
                    usage.extend(decoded)
                    usage_records += records
                    continue
                for record in records:
                    try:
                        usage.append(decode_usage(record.value))
                        usage_records.append(record)
                    except Undecodable as exc:
                        rejected.append((record, Rejection(exc.kind, str(exc))))
                continue
            for record in records:
                moment = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                try:
                    item = decode(role, record.value, moment)
                except Undecodable as exc:
                    rejected.append((record, Rejection(exc.kind, str(exc))))
                    continue
                if item is SKIPPED:
                    self._metrics.ignored.labels(tp.topic).inc()
                elif isinstance(item, UsageEvent):
                    usage.append(item)
                    usage_records.append(record)
                else:
                    runs.append(item)
                    run_records.append(record)
        await asyncio.gather(
            *(self._dead_letter(producer, record, why) for record, why in rejected)
        )
        records = [*table_records, *usage_records, *run_records]
        if tables:
            return _Decoded(
                concat_usage([*tables, usage_table(usage)] if usage else tables), runs, records
            )
        return _Decoded(usage, runs, records)

    async def _store_and_commit(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        offsets: dict[TopicPartition, int],
        batch: _Decoded,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Store the batch (dead-lettering what the store refuses alone), then commit
        ``offsets`` (past it) once ``previous`` (the batch before) is committed; if that one
        failed, so does this one, uncommitted."""
        refused = await self._store(batch.usage, batch.runs)
        await asyncio.gather(
            *(
                self._dead_letter(
                    producer,
                    batch.records[row],
                    Rejection(_STORE_REFUSED, f"{type(error).__name__}: {error}"),
                    attempts=1,  # the store was asked to take it
                )
                for row, error in refused
            )
        )
        if previous is not None:
            await previous
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another consumer; it gets the batch again, and the
            # store's keys make that harmless.
            logger.warning("commit refused after a rebalance", error=str(exc))
            return
        self.last_commit_at = datetime.now(UTC)
        for tp, offset in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self._metrics.lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - offset)
                )

    async def _store(self, usage: list[UsageEvent] | pa.Table, runs: list[WorkflowRun]) -> Refused:
        """Store the batch; the rows the store refuses alone (``refusals.py``), with its error.
        Any other failure (the store away, say) is tried again, and raised once out of
        attempts. Its duplicates are counted once it is stored: what an attempt that failed
        stored, the next finds stored, and it did not come twice."""
        refused: Refused = []
        if not len(usage) and not runs:
            return refused
        new = NewRows()
        async for attempt in stamina.retry_context(
            on=Exception, attempts=_STORE_ATTEMPTS, timeout=None, wait_initial=0.2, wait_max=5
        ):
            with attempt:
                if attempt.num > 1:
                    logger.warning("storing a batch again", attempt=attempt.num)
                refused = await store_apart(self._ingestor, usage, runs, source="kafka", new=new)
        count_batch(self._ingestor, refused, new, usage=len(usage), runs=len(runs))
        return refused

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer,
        record: ConsumerRecord[bytes, bytes],
        rejection: Rejection,
        *,
        attempts: int = 0,
    ) -> None:
        """``record``'s dead letter, sent and acknowledged; ``attempts`` 0 for a record refused
        as it was read (nothing of it was tried to be stored)."""
        letter = rejection.letter(record, attempts=attempts)
        topic = self._settings.dlq_topic
        with produce_span(topic, key=record.key) as headers:
            await send_acknowledged(producer, topic, record.key, _encode(letter), headers or None)
        self._metrics.dead_lettered.labels(record.topic, rejection.kind).inc()
        logger.warning(
            "record dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=rejection.reason,
        )
