"""Experiment outcomes from ``workflow-results``: runs whose event carries an experiment id.

One consumer loop, in its own group. Each fetched batch is read, its outcomes stored in one
SQLite transaction, its dead letters acknowledged by the broker, and only then are its offsets
committed: at least once. A redelivered run is stored once, by its ``workflow_run_id``.

Events without ``metadata.experiment_id`` are other consumers' business and are passed over.
Events that carry one but cannot become an outcome (not JSON, wrong fields, unknown or stopped
experiment, a variant or version the unit was not assigned) go to the DLQ topic with the
reason, untouched; so do records aiokafka cannot build at all (a header name not UTF-8: the
fetch reads around them, ``libs/common/kafka/fetching.py``). Nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import CommitFailedError

from libs.common.kafka.fetching import Fetched, Fetcher
from libs.common.kafka.records import TrackAssignment, stop_producer
from libs.common.kafka.rejection import Rejection
from libs.common.kafka.topics import PAS_TOPICS, ensure_topics
from libs.common.kafka.tracing import consume_span
from libs.common.schemas.versioning import (
    METADATA_EXPERIMENT_ID,
    ExperimentRunMetadata,
    WorkflowResultEvent,
)
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable
from services.versioning.experiments import ExperimentBook, RunOutcome
from services.versioning.metrics import VersioningMetrics
from services.versioning.settings import VersioningSettings

logger = structlog.get_logger("pas.versioning.outcomes")

EVENT_COMPLETED = "workflow.completed"
EVENT_FAILED = "workflow.failed"
STATUS_CANCELLED = "cancelled"
_FETCH_TIMEOUT_MS = 500
_MAX_RECORDS = 500

_encode = msgspec.json.Encoder().encode


class _Probe(msgspec.Struct):
    """Just enough of an event to see whether it is an experiment's run."""

    metadata: dict[str, Any] | None = None


_decode_probe = msgspec.json.Decoder(_Probe).decode
_decode_event = msgspec.json.Decoder(WorkflowResultEvent).decode


def read_event(value: bytes | None) -> RunOutcome | Rejection | None:
    """The run's outcome, why it cannot be one, or ``None`` when it is no experiment's."""
    if not value:
        return None
    try:
        probe = _decode_probe(value)
    except UNREADABLE_JSON as exc:
        return Rejection("invalid_event", f"not a workflow-results event: {why_unreadable(exc)}")
    if not probe.metadata or METADATA_EXPERIMENT_ID not in probe.metadata:
        return None
    try:
        event = _decode_event(value)
        run = msgspec.convert(event.metadata, ExperimentRunMetadata)
    except msgspec.ValidationError as exc:
        return Rejection("invalid_outcome", str(exc))
    if event.event_type not in (EVENT_COMPLETED, EVENT_FAILED):
        return Rejection(
            "invalid_outcome",
            f"event_type {event.event_type!r} is neither {EVENT_COMPLETED} nor {EVENT_FAILED}",
        )
    payload = event.payload
    if payload is None or payload.duration_ms is None:
        return Rejection("invalid_outcome", "payload.duration_ms is missing")
    if payload.status == STATUS_CANCELLED:
        return None
    return RunOutcome(
        experiment_id=run.experiment_id,
        workflow_id=event.workflow_id,
        unit=run.unit,
        variant=run.variant,
        workflow_version=run.workflow_version or _version_number(payload.parameters_version),
        success=event.event_type == EVENT_COMPLETED,
        latency_ms=payload.duration_ms,
        cost=payload.cost or 0.0,
        score=payload.score,
        key=event.workflow_run_id or event.event_id,
    )


def _version_number(version: str | int | None) -> int | None:
    if isinstance(version, int):
        return version
    return int(version) if version and version.isdigit() else None


class OutcomeConsumer:
    def __init__(
        self, settings: VersioningSettings, book: ExperimentBook, metrics: VersioningMetrics
    ) -> None:
        assert settings.bootstrap_servers, "the outcome consumer needs a Kafka cluster"
        self._bootstrap = settings.bootstrap_servers
        self._settings = settings
        self._book = book
        self._metrics = metrics
        self.connected = False
        self.consumed = 0

    async def run(self, stop: asyncio.Event) -> None:
        s = self._settings
        await ensure_topics(
            self._bootstrap,
            {s.results_topic: PAS_TOPICS.get(s.results_topic, 3), s.dlq_topic: 1},
        )
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", linger_ms=5)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, s.kafka_session_timeout_ms // 4),
        )
        fetcher = Fetcher(consumer, name="outcome consumer")
        consumer.subscribe(
            [s.results_topic], listener=TrackAssignment(set(), placed=fetcher.placed)
        )
        await producer.start()
        try:
            await consumer.start()
            self.connected = True
            logger.info("outcome consumer started", topic=s.results_topic, group=s.group_id)
            try:
                while not stop.is_set():
                    fetched = await fetcher.getmany(
                        timeout_ms=_FETCH_TIMEOUT_MS, max_records=_MAX_RECORDS
                    )
                    if fetched:
                        await self._handle(consumer, producer, fetched)
            finally:
                self.connected = False
                await consumer.stop()
        finally:
            await stop_producer(producer)
            logger.info("outcome consumer stopped", consumed=self.consumed)

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        fetched: Fetched,
    ) -> None:
        records = [record for batch in fetched.records.values() for record in batch]
        runs: list[tuple[ConsumerRecord[bytes, bytes], RunOutcome]] = []
        letters: list[tuple[ConsumerRecord[bytes, bytes], Rejection]] = []
        for item in fetched.unreadable:
            with consume_span(item.record, group=self._settings.group_id) as span:
                span.set_attribute("pas.rejected", item.error_type)
            letters.append((item.record, Rejection.of_unreadable(item)))
        for record in records:
            # A consume span per record, in the trace of the run that reported it; the batch's
            # one store write follows outside them all.
            with consume_span(record, group=self._settings.group_id) as span:
                found = read_event(record.value)
                if isinstance(found, Rejection):
                    span.set_attribute("pas.rejected", found.kind)
            if isinstance(found, Rejection):
                letters.append((record, found))
            elif found is not None:
                runs.append((record, found))
        verdicts = await self._book.record_runs([run for _, run in runs])
        for (record, run), verdict in zip(runs, verdicts, strict=True):
            if verdict is not None:
                letters.append((record, Rejection(verdict, _explain(verdict, run))))
        await self._dead_letter(producer, letters)
        try:
            await consumer.commit(fetched.next_offsets())
        except CommitFailedError as exc:
            # The group moved these partitions meanwhile; the new owner reads the batch again
            # and the outcome keys keep it from counting twice.
            logger.warning("offsets not committed after a rebalance", error=str(exc))
        self.consumed += len(records) + len(fetched.unreadable)

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer,
        letters: list[tuple[ConsumerRecord[bytes, bytes], Rejection]],
    ) -> None:
        """The batch's letters sent at once, then every one acknowledged (one at a time, each
        waited for the producer's linger and the broker before the next was sent)."""
        acknowledged = [
            await producer.send(
                self._settings.dlq_topic,
                # Refused as it was read or by the experiment's checks: never recorded.
                _encode(rejected.letter(record, attempts=0)),
                key=record.key,
            )
            for record, rejected in letters
        ]
        await asyncio.gather(*acknowledged)
        for record, rejected in letters:
            self._metrics.dead_lettered.labels(rejected.kind).inc()
            logger.warning(
                "event dead-lettered",
                kind=rejected.kind,
                reason=rejected.reason,
                partition=record.partition,
                offset=record.offset,
            )


def _explain(kind: str, run: RunOutcome) -> str:
    return {
        "unknown_experiment": f"experiment {run.experiment_id!r} does not exist",
        "experiment_stopped": f"experiment {run.experiment_id!r} is stopped",
        "workflow_mismatch": f"workflow {run.workflow_id!r} is not the experiment's workflow",
        "variant_mismatch": f"unit {run.unit!r} is not assigned to variant {run.variant!r}",
        "version_mismatch": (
            f"unit {run.unit!r} was not assigned version {run.workflow_version} in this experiment"
        ),
    }.get(kind, kind)
