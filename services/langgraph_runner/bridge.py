"""The Kafka bridge: ``workflow.triggered`` events in; their runs' outcomes go out on
``workflow-results`` through the outbox of ``outcomes.py`` (with every other run's).

- Each record of ``workflow-events`` is decoded and validated (envelope, workflow id, the
  workflow's input); what fails goes to ``workflow-events-dlq`` with the reason.
- A valid event starts its run once: the run store keys runs by ``event_id``, so an event seen
  again (a duplicate, or redelivered after a restart) finds the run it started.
- An offset is committed once its event's outcome is published (same ``event_id`` and
  ``workflow_run_id``, keyed by ``workflow_run_id``), or its run waits for a person
  (interrupted: the event is safe in the store, and a person may take days). So a crash
  redelivers only events whose outcome is not out yet, and they find their runs.
- Tracing: each event gets a CONSUMER span in the trace its headers carry, current while it is
  validated and its run started (the run's span is its child) and while its dead letter is
  published (a PRODUCER span, its context in the dead letter's headers); it ends there, not
  when the run does (a run may wait days for a person).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid
from collections.abc import Awaitable
from typing import Any

import msgspec
import stamina
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from opentelemetry.trace import Span

from libs.common.clients.versioning import VersioningError, VersioningUnavailable
from libs.common.constants import KAFKA_FETCH_MAX_WAIT_MS
from libs.common.kafka.records import send_acknowledged, stop_producer
from libs.common.kafka.rejection import Rejection
from libs.common.kafka.tracing import current, finish_in, produce_span, start_consume_span
from libs.common.kafka.unreadable import Unreadable
from libs.common.kafka.work_loop import LoopLimits, NotRecorded, WorkLoop
from libs.common.schemas.workflows import EVENT_TRIGGERED, WorkflowTriggered
from libs.common.unreadable_json import NESTED_TOO_DEEP, UNREADABLE_JSON
from services.langgraph_runner.errors import (
    InvalidWorkflowInput,
    VersionUnusable,
    WorkflowNotFound,
)
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.runs import RunManager, RunnerClosing
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.store import RunRecord

logger = structlog.get_logger("pas.runner.kafka")

_encode = msgspec.json.Encoder().encode
_decode_event = msgspec.json.Decoder(WorkflowTriggered).decode
_decode_any = msgspec.json.Decoder().decode
_REVOKE_WAIT_S = 5.0
_STOP_WAIT_S = 1.0
_TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
# What passes: the version manager away (or refusing the runner's own token), the run store
# busy or its connection lost (PostgreSQL's: :func:`_postgres_lost`). An event meeting one is
# tried again in its slot (the loop fetches no more while every slot waits) until it passes or
# the runner stops; raised, it would leave its partition uncommitted until a restart.
_PASSING = (VersioningUnavailable, sqlite3.OperationalError)
_RUNNERS_OWN_REFUSALS = (401, 403)


class _Rejected(Exception):
    """An event that cannot run: it goes to the DLQ with ``kind`` and the reason."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class WorkflowBridge:
    def __init__(self, settings: RunnerSettings, runs: RunManager, metrics: RunnerMetrics) -> None:
        assert settings.bootstrap_servers, "the bridge needs KAFKA_BOOTSTRAP_SERVERS"
        self._settings = settings
        self._bootstrap = settings.bootstrap_servers
        self._runs = runs
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._loop: WorkLoop | None = None
        self.assigned: set[TopicPartition] = set()
        self.instance = uuid.uuid4().hex[:8]

    @property
    def connected(self) -> bool:
        return self._loop is not None and self._loop.joined

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """The shared work loop (``libs/common/kafka/work_loop.py``): an event holds its slot
        until its run's outcome is published (or the run waits for a person). On stop, events
        whose runs are still going get a second, then stay uncommitted and come back after the
        restart (their runs resume then); the outbox has reported what finished before."""
        s = self._settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", linger_ms=5
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=KAFKA_FETCH_MAX_WAIT_MS,
            # An event holds its slot until its run ends; while every slot is busy the loop
            # does not poll, so this exceeds the longest run.
            max_poll_interval_ms=int(s.max_poll_interval_s * 1000),
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.session_timeout_s * 1000 / 3),
        )
        limits = LoopLimits(
            slots=s.max_events_in_flight,
            unrecorded=s.max_events_in_flight,
            commit_interval_s=s.commit_interval_s,
            settle_timeout_s=_REVOKE_WAIT_S,
            drain_timeout_s=_STOP_WAIT_S,
        )
        self.assigned.clear()
        self._loop = WorkLoop(
            consumer,
            [s.events_topic],
            self._handle,
            limits,
            assigned=self.assigned,
            name="bridge",
            unreadable=self._handle_unreadable,
        )
        await self._producer.start()
        try:
            logger.info("kafka bridge starting", topic=s.events_topic, group_id=s.group_id)
            await self._loop.run(stop)
        finally:
            await stop_producer(self._producer)
            logger.info("kafka bridge stopped")

    # -- one event -----------------------------------------------------------------------------

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> Awaitable[None] | None:
        """In its slot until its run's outcome is out; an event that cannot run hands its
        dead letter over instead (published outside the slot)."""
        span = start_consume_span(record, group=self._settings.group_id)
        try:
            # Current while the run starts: its task copies the context, its span is a child.
            with current(span):
                event = self._validate(record)
                run, created = await self._start(event, record)
        except _Rejected as rejected:
            return self._rejected(span, record, Rejection(rejected.kind, str(rejected)))
        except (WorkflowNotFound, InvalidWorkflowInput) as exc:
            kind = "unknown_workflow" if isinstance(exc, WorkflowNotFound) else "invalid_input"
            return self._rejected(span, record, Rejection(kind, str(exc)))
        except VersioningError as exc:
            # The version manager refused what the event asks (a unit it does not take):
            # every try would be refused the same way.
            return self._rejected(span, record, Rejection("invalid_input", str(exc)))
        except VersionUnusable as exc:
            # The version is to be mended; then the letter can be replayed.
            return self._rejected(span, record, Rejection("unusable_version", str(exc)))
        except RunnerClosing as exc:
            span.end()
            raise NotRecorded from exc  # not committed: the event comes back after the restart
        except BaseException:
            span.end()
            raise
        span.end()
        self._metrics.events.labels("accepted" if created else "duplicate").inc()
        if not created:
            logger.info(
                "event seen before; not run again",
                event_id=event.event_id,
                run_id=run.run.run_id,
                status=run.run.status,
            )
        try:
            await self._runs.wait(run.run.run_id, reported=True)
        except RunnerClosing as exc:
            raise NotRecorded from exc
        return None

    async def _handle_unreadable(self, unreadable: Unreadable) -> Awaitable[None]:
        """An event aiokafka could not build: dead-lettered as it is."""
        record = unreadable.record
        span = start_consume_span(record, group=self._settings.group_id)
        return self._rejected(span, record, Rejection.of_unreadable(unreadable))

    async def _start(
        self, event: WorkflowTriggered, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[RunRecord, bool]:
        """Start the event's run, trying again for as long as what stops it passes."""
        async for attempt in stamina.retry_context(
            on=_passes, attempts=None, timeout=None, wait_initial=0.5, wait_max=10.0
        ):
            with attempt:
                if attempt.num > 1:
                    self._metrics.events.labels("retried").inc()
                return await self._runs.start_for_event(event, _trace_headers(record))
        raise AssertionError("unreachable: the retries never end")  # pragma: no cover

    def _rejected(
        self, span: Span, record: ConsumerRecord[bytes, bytes], rejection: Rejection
    ) -> Awaitable[None]:
        """The dead letter's publication, under the event's span (ended once it is out)."""
        if span.is_recording():
            span.set_attribute("error.type", rejection.kind)
        return finish_in(span, self._dead_letter(record, rejection))

    def _validate(self, record: ConsumerRecord[bytes, bytes]) -> WorkflowTriggered:
        value = record.value
        limit = self._settings.max_event_bytes
        if value is None:
            # `tombstone`, as the shared dead letter (its `tombstone` flag) and the processor
            # file one: a DLQ reader sorts letters by error type across services.
            raise _Rejected("tombstone", "a tombstone: a record without a value")
        if len(value) > limit:
            raise _Rejected("too_large", f"event of {len(value)} bytes (limit {limit})")
        try:
            return _decode_event(value)
        except msgspec.ValidationError as exc:
            event_type = None
            try:
                found = _decode_any(value)
                event_type = found.get("event_type") if isinstance(found, dict) else None
            except UNREADABLE_JSON:
                pass
            if event_type is not None and event_type != EVENT_TRIGGERED:
                raise _Rejected(
                    "unsupported_event_type",
                    f"event_type {event_type!r}: this topic takes {EVENT_TRIGGERED!r} only",
                ) from exc
            raise _Rejected("invalid_event", f"not a {EVENT_TRIGGERED} event: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise _Rejected("not_json", f"not JSON: {exc}") from exc
        except RecursionError as exc:
            # Past the decoder's depth: refused as any bad event, not raised (its partition
            # would commit no further, and the record fail again after every restart).
            reason = f"not a {EVENT_TRIGGERED} event: {NESTED_TOO_DEEP}"
            raise _Rejected("invalid_event", reason) from exc

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], rejection: Rejection
    ) -> None:
        letter = rejection.letter(record, attempts=0)
        await self._publish(self._settings.dlq_topic, record.key, _encode(letter), [])
        self._metrics.events.labels("dead_lettered").inc()
        self._metrics.dead_lettered.labels(rejection.kind).inc()
        logger.warning(
            "event dead-lettered",
            kind=rejection.kind,
            reason=rejection.reason,
            partition=record.partition,
            offset=record.offset,
        )

    async def _publish(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        """Send with the broker's acknowledgement, in a PRODUCER span whose context the record's
        headers carry (``headers`` as they are with tracing off)."""
        assert self._producer is not None
        with produce_span(topic, key=key, headers=headers) as sent:
            return await send_acknowledged(self._producer, topic, key, value, sent or None)


def _passes(exc: Exception) -> bool:
    """Whether what stopped an event's start may pass by itself (then it is tried again)."""
    passing = (
        isinstance(exc, _PASSING)
        or _postgres_lost(exc)
        or (isinstance(exc, VersioningError) and exc.status_code in _RUNNERS_OWN_REFUSALS)
    )
    if passing:
        logger.warning("an event's run could not start yet; trying again", error=str(exc))
    return passing


def _postgres_lost(exc: Exception) -> bool:
    """Whether ``exc`` is psycopg's for a connection lost or refused. psycopg is the postgres
    extra's, imported by the PostgreSQL store only: where it was never imported, no store
    raised it (and a runner on SQLite, installed without the extra, starts)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def _trace_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {
        key: value.decode(errors="replace")
        for key, value in record.headers
        if key.lower() in _TRACE_HEADERS
    }
