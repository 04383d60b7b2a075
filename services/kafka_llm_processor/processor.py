"""The processor's work: one document in one slot of the shared work loop
(``libs/common/kafka/work_loop.py``), which commits per partition only up to the lowest document
not yet recorded somewhere durable.

A slot holds a document while the LLM answers it; its result (or dead letter) is then handed to
the producer and the slot takes the next document, while the publication goes on outside it.
A document is recorded once the broker acknowledged its result or its dead letter; when neither
is taken (refused, or not within ``PROCESSOR_PUBLISH_DEADLINE_S`` each), once it is appended to
the spill file in ``PROCESSOR_SPILL_DIR`` (fsync'ed). A document that cannot be recorded even
there is never committed past: its partition commits no further until a restart redelivers it.

How a document is answered (decoded, asked whole or in parts, grounded, retried) is
``answering.py``'s; here is what becomes of its answer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Coroutine
from typing import Any

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import ProducerClosed
from opentelemetry.trace import Span

from libs.common.constants import KAFKA_FETCH_MAX_WAIT_MS
from libs.common.kafka.partitioner import KafkaPartitioner
from libs.common.kafka.publisher import BatchPublisher
from libs.common.kafka.records import PublishFailed, stop_producer, track_topics
from libs.common.kafka.rejection import Rejection
from libs.common.kafka.spill import SpillFile
from libs.common.kafka.tracing import current, finish_in, produce_span, start_consume_span
from libs.common.kafka.unreadable import Unreadable
from libs.common.kafka.work_loop import LoopLimits, NotRecorded, WorkLoop
from libs.common.schemas.documents import DocumentResult
from libs.common.telemetry import tracing_enabled
from services.kafka_llm_processor.answering import DocumentAnswerer, Unanswerable
from services.kafka_llm_processor.llm_client import LLMClient
from services.kafka_llm_processor.metrics import ProcessorMetrics
from services.kafka_llm_processor.settings import ProcessorSettings

logger = structlog.get_logger("pas.processor")

_encode = msgspec.json.Encoder().encode
PRODUCER_BATCH_BYTES = 262_144
"""The most the producer puts in one batch a partition (aiokafka's default is 16 KiB)."""


class DocumentProcessor:
    def __init__(
        self, settings: ProcessorSettings, llm: LLMClient, metrics: ProcessorMetrics
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._answerer = DocumentAnswerer(settings, llm, metrics)
        self.spill = SpillFile(settings.spill_dir, consumer=settings.group_id)
        self.instance = uuid.uuid4().hex[:8]
        self.assigned: set[TopicPartition] = set()
        self._loop: WorkLoop | None = None
        self._publisher: BatchPublisher | None = None
        # Read when scraped: the loop counts its slots anyway, and a gauge's inc and dec take a
        # lock each, on every document.
        metrics.in_flight.set_function(self._in_slots)

    @property
    def connected(self) -> bool:
        return self._loop is not None and self._loop.joined

    def _in_slots(self) -> float:
        return 0 if self._loop is None else self._loop.in_slots

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self._settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            compression_type=None if s.compression == "none" else s.compression,
            partitioner=KafkaPartitioner(),
            linger_ms=10,
            # aiokafka fills one batch a partition and makes every later send wait for it to be
            # sent; at its 16 KiB default, results from many slots at once kept waking and
            # re-waiting (a tenth of the processor's time at 64 slots, docs/benchmarks.md).
            max_batch_size=PRODUCER_BATCH_BYTES,
            acks="all",
            # Below the publish deadline, so that a batch aiokafka cannot deliver ends in time
            # for send_acknowledged to try it again (aiokafka's default is 40 s).
            request_timeout_ms=int(min(40.0, max(1.0, s.publish_deadline_s / 3)) * 1000),
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=KAFKA_FETCH_MAX_WAIT_MS,
            fetch_max_bytes=max(s.max_message_bytes * 4, 52_428_800),
            # The loop stops polling while every slot is busy; a slot frees within
            # longest_document_s, so the group must not give up on this consumer before that.
            max_poll_interval_ms=int(max(300.0, 2 * s.longest_document_s) * 1000),
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.session_timeout_s * 1000 / 3),
            # A revoked partition's documents settle (up to drain_timeout_s) before the member
            # rejoins; by default the group waits only the session timeout for it, then drops
            # it: the new owner asks again what was not committed, the settle's commit fails.
            rebalance_timeout_ms=int((s.drain_timeout_s + s.session_timeout_s) * 1000),
        )
        limits = LoopLimits(
            slots=s.concurrency,
            unrecorded=s.max_unacknowledged,
            commit_interval_s=s.commit_interval_s,
            settle_timeout_s=s.drain_timeout_s,
            drain_timeout_s=s.drain_timeout_s,
        )
        self.assigned.clear()
        self._loop = WorkLoop(
            consumer,
            [s.input_topic],
            self._handle,
            limits,
            assigned=self.assigned,
            name="processor",
            on_commit=self._observe_lag,
            unreadable=self._handle_unreadable,
        )
        await producer.start()
        self._publisher = BatchPublisher(
            producer, batch_bytes=PRODUCER_BATCH_BYTES, deadline_s=s.publish_deadline_s
        )
        try:
            await track_topics(producer, [s.output_topic, s.dlq_topic])
            logger.info("processor starting", instance=self.instance, settings=s.redacted())
            await self._loop.run(stop)
        finally:
            await self._publisher.close()
            await stop_producer(producer)
            logger.info("processor stopped", instance=self.instance)

    def _observe_lag(self, loop: WorkLoop) -> None:
        for tp, lag in loop.lag().items():
            self._metrics.lag.labels(str(tp.partition)).set(lag)

    # -- one document --------------------------------------------------------------------------

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> Awaitable[None]:
        """Answer ``record`` in its slot; what it hands back publishes the answer (or the dead
        letter, or spills it) outside the slot.

        The record's CONSUMER span (in the trace its headers carry) is current while it is
        answered and while its result or dead letter is published (their PRODUCER spans are
        its children), and ends once the document is recorded."""
        started = time.perf_counter()
        span = start_consume_span(record, group=self._settings.group_id)
        try:
            with current(span):
                result = await self._answerer.answer(record, started)
        except Unanswerable as failure:
            if span.is_recording():
                span.set_attribute("error.type", failure.rejection.kind)
            return self._recorded(
                record, self._dead_letter(record, failure.rejection, failure.attempts), span
            )
        except Exception as exc:
            span.end()
            self._nowhere(record)
            raise NotRecorded from exc
        except BaseException:
            span.end()
            raise
        return self._recorded(record, self._publish_result(record, result, started), span)

    async def _handle_unreadable(self, unreadable: Unreadable) -> Awaitable[None]:
        """A record aiokafka could not build: dead-lettered (or spilled) as it is."""
        record = unreadable.record
        rejection = Rejection.of_unreadable(unreadable)
        span = start_consume_span(record, group=self._settings.group_id)
        if span.is_recording():
            span.set_attribute("error.type", rejection.kind)
        return self._recorded(record, self._dead_letter(record, rejection, 0), span)

    async def _recorded(
        self,
        record: ConsumerRecord[bytes, bytes],
        publication: Coroutine[Any, Any, None],
        span: Span,
    ) -> None:
        try:
            await finish_in(span, publication)
        except ProducerClosed as exc:
            # Stopped before it was published; uncommitted, so it comes back after the restart.
            logger.warning("stopped before a document was published", offset=record.offset)
            raise NotRecorded from exc
        except Exception as exc:
            self._nowhere(record)
            raise NotRecorded from exc

    def _nowhere(self, record: ConsumerRecord[bytes, bytes]) -> None:
        # Not even the spill file took it: the offset stays uncommitted, and with it every
        # later offset of its partition, until a restart brings the document back.
        self._metrics.unpublishable.labels("nowhere").inc()
        logger.critical(
            "a document was recorded nowhere: not answered, not dead-lettered, not spilled; "
            "its partition commits no further until a restart",
            **_coordinates(record),
            exc_info=True,
        )

    async def _publish_result(
        self, record: ConsumerRecord[bytes, bytes], result: DocumentResult, started: float
    ) -> None:
        try:
            await self._publish(
                self._settings.output_topic, result.doc_id.encode(), _encode(result)
            )
        except PublishFailed as exc:
            rejection = Rejection("unpublished", f"its result was not published: {exc}")
            await self._dead_letter(record, rejection, result.attempts, refused=[str(exc)])
            return
        self._metrics.processed_of[result.task].inc()
        self._metrics.prompt_tokens.inc(result.prompt_tokens)
        self._metrics.completion_tokens.inc(result.completion_tokens)
        self._metrics.latency.observe(time.perf_counter() - started)

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        rejection: Rejection,
        attempts: int,
        *,
        refused: list[str] | None = None,
    ) -> None:
        letter = rejection.letter(record, attempts=attempts)
        try:
            await self._publish(self._settings.dlq_topic, record.key, _encode(letter))
        except PublishFailed as exc:
            await self._spill_record(record, rejection, attempts, [*(refused or []), str(exc)])
            return
        self._metrics.dead_lettered.labels(rejection.kind).inc()
        logger.warning(
            "dead-lettered",
            offset=record.offset,
            partition=record.partition,
            reason=rejection.reason,
            attempts=attempts,
        )

    async def _spill_record(
        self,
        record: ConsumerRecord[bytes, bytes],
        rejection: Rejection,
        attempts: int,
        refused: list[str],
    ) -> None:
        """Raises ``SpillFailed`` when the spill file cannot take it either."""
        path = await self.spill.append(
            record,
            error=rejection.reason,
            error_type=rejection.kind,
            attempts=attempts,
            refused=refused,
        )
        self._metrics.unpublishable.labels("spill").inc()
        logger.error(
            "a document no topic took was spilled to disk",
            **_coordinates(record),
            path=str(path),
            reason=rejection.reason,
            refused=refused,
        )

    def _publish(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[None]:
        """Publishes with the broker's acknowledgement, in a PRODUCER span whose context the
        record's headers carry (no headers with tracing off)."""
        assert self._publisher is not None
        if not tracing_enabled():  # produce_span's context manager would cost every result
            return self._publisher.publish(topic, key, value)
        return self._publish_traced(self._publisher, topic, key, value)

    @staticmethod
    async def _publish_traced(
        publisher: BatchPublisher, topic: str, key: bytes | None, value: bytes
    ) -> None:
        with produce_span(topic, key=key) as headers:
            await publisher.publish(topic, key, value, headers)


def _coordinates(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode(errors="replace")[:256] if record.key else None,
    }
