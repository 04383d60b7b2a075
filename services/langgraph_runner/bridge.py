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
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from libs.common.kafka.offsets import OffsetBook
from libs.common.kafka.records import TrackAssignment, dead_letter, send_acknowledged
from libs.common.schemas.workflows import EVENT_TRIGGERED, WorkflowTriggered
from services.langgraph_runner.errors import InvalidWorkflowInput, WorkflowNotFound
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.runs import RunManager, RunnerClosing
from services.langgraph_runner.settings import RunnerSettings

logger = structlog.get_logger("pas.runner.kafka")

_encode = msgspec.json.Encoder().encode
_decode_event = msgspec.json.Decoder(WorkflowTriggered).decode
_decode_any = msgspec.json.Decoder().decode
_REVOKE_WAIT_S = 5.0
_TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


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
        self._book = OffsetBook()
        self._handlers: dict[asyncio.Task[None], TopicPartition] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.assigned: set[TopicPartition] = set()
        self.connected = False
        self.instance = uuid.uuid4().hex[:8]

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self._settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", linger_ms=5
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=int(s.max_poll_interval_s * 1000),
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.session_timeout_s * 1000 / 3),
        )
        self._consumer.subscribe(
            [s.events_topic], listener=TrackAssignment(self.assigned, self._settle)
        )
        await self._producer.start()
        try:
            if not await self._joined(stop):
                return
            self.connected = True
            logger.info("kafka bridge started", topic=s.events_topic, group_id=s.group_id)
            last_commit = time.monotonic()
            while not stop.is_set():
                await self._fetch()
                if time.monotonic() - last_commit >= s.commit_interval_s:
                    await self._commit()
                    last_commit = time.monotonic()
            await self._shutdown()
        finally:
            self.connected = False
            await self._consumer.stop()
            await self._producer.stop()
            logger.info("kafka bridge stopped")

    async def _joined(self, stop: asyncio.Event) -> bool:
        """Start the consumer (which waits until the group has formed); ``False`` if the
        runner is stopping first."""
        assert self._consumer is not None
        joining = asyncio.ensure_future(self._consumer.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({joining, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not joining.done():
            joining.cancel()
            await asyncio.gather(joining, return_exceptions=True)
            return False
        joining.result()
        return True

    async def _fetch(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        room = self._settings.max_events_in_flight - len(self._handlers)
        if room <= 0:
            # Every slot holds a run; polling resumes when one settles (max_poll_interval_s
            # is set above the longest run for this reason).
            await asyncio.wait(
                list(self._handlers),
                timeout=self._settings.commit_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            return
        batches = await consumer.getmany(timeout_ms=200, max_records=room)
        for tp, records in batches.items():
            for record in records:
                self._book.started(tp, record.offset)
                task = asyncio.create_task(self._handle(tp, record))
                self._handlers[task] = tp
                task.add_done_callback(self._handlers.pop)

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        if partitions is not None:
            assigned = assigned & partitions
        offsets = self._book.committable(assigned)
        if offsets:
            await consumer.commit(offsets)
            self._book.committed(offsets)

    async def _settle(self, partitions: set[TopicPartition]) -> None:
        """Before partitions move to another consumer: commit what is done there."""
        pending = [task for task, tp in self._handlers.items() if tp in partitions]
        if pending:
            await asyncio.wait(pending, timeout=_REVOKE_WAIT_S)
        await self._commit(partitions)
        self._book.forget(partitions)

    async def _shutdown(self) -> None:
        """Commit what is published (the outbox reported what finished before the bridge was
        stopped); events whose runs are still going stay uncommitted and come back after the
        restart (their runs resume then)."""
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=1.0)
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._commit()

    # -- one event -----------------------------------------------------------------------------

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            try:
                event = self._validate(record)
                run, created = await self._runs.start_for_event(event, _trace_headers(record))
            except _Rejected as rejected:
                await self._dead_letter(record, rejected.kind, str(rejected))
            except (WorkflowNotFound, InvalidWorkflowInput) as exc:
                kind = "unknown_workflow" if isinstance(exc, WorkflowNotFound) else "invalid_input"
                await self._dead_letter(record, kind, str(exc))
            else:
                self._metrics.events.labels("accepted" if created else "duplicate").inc()
                if not created:
                    logger.info(
                        "event seen before; not run again",
                        event_id=event.event_id,
                        run_id=run.run.run_id,
                        status=run.run.status,
                    )
                await self._runs.wait(run.run.run_id, reported=True)
            self._book.finished(tp, record.offset)
        except RunnerClosing:
            pass  # not committed: the event comes back after the restart
        except asyncio.CancelledError:
            raise
        except Exception:
            # Uncommitted: the event comes back after a restart and finds its run, if any.
            logger.exception(
                "event could not be handled", offset=record.offset, partition=tp.partition
            )

    def _validate(self, record: ConsumerRecord[bytes, bytes]) -> WorkflowTriggered:
        value = record.value
        limit = self._settings.max_event_bytes
        if value is None or len(value) > limit:
            size = 0 if value is None else len(value)
            raise _Rejected(
                "too_large" if value else "empty", f"event of {size} bytes (limit {limit})"
            )
        try:
            return _decode_event(value)
        except msgspec.ValidationError as exc:
            event_type = None
            try:
                found = _decode_any(value)
                event_type = found.get("event_type") if isinstance(found, dict) else None
            except msgspec.DecodeError:
                pass
            if event_type is not None and event_type != EVENT_TRIGGERED:
                raise _Rejected(
                    "unsupported_event_type",
                    f"event_type {event_type!r}: this topic takes {EVENT_TRIGGERED!r} only",
                ) from exc
            raise _Rejected("invalid_event", f"not a {EVENT_TRIGGERED} event: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise _Rejected("not_json", f"not JSON: {exc}") from exc

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], kind: str, reason: str
    ) -> None:
        letter = dead_letter(record, error=reason, error_type=kind, attempts=0)
        await self._publish(self._settings.dlq_topic, record.key, _encode(letter), [])
        self._metrics.events.labels("dead_lettered").inc()
        self._metrics.dead_lettered.labels(kind).inc()
        logger.warning(
            "event dead-lettered",
            kind=kind,
            reason=reason,
            partition=record.partition,
            offset=record.offset,
        )

    async def _publish(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        assert self._producer is not None
        return await send_acknowledged(self._producer, topic, key, value, headers)


def _trace_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {
        key: value.decode(errors="replace")
        for key, value in record.headers
        if key.lower() in _TRACE_HEADERS
    }
