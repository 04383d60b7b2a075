"""Publish usage events to Kafka without ever slowing or failing the request that made them.

``publish()`` only puts the event in a bounded in-memory queue and returns; a background task
connects to the broker (retrying with backoff while it is away) and drains the queue into an
``AIOKafkaProducer``. When the queue is full the event is dropped and counted, so a slow or
absent broker costs a service memory up to the bound and nothing else. Every event that does
not reach the broker is counted in ``pas_usage_events_dropped_total`` with the reason.

    async with UsagePublisher(bootstrap, service="provider_router") as usage:
        usage.publish(event)

With tracing on, ``publish()`` keeps the trace context current where it is called (the call
that made the event) beside the event, and the background task sends the record in a PRODUCER
span under it, the span's context in the record's headers: analytics links its batch to it.
With tracing off nothing is kept and the record has no headers.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Final, Literal, Self

import msgspec
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry import context as otel_context
from prometheus_client import Counter, Gauge
from prometheus_client.registry import Collector

from libs.common.constants import TOPIC_LLM_USAGE
from libs.common.kafka.tracing import produce_span
from libs.common.schemas.usage import UsageEvent
from libs.common.telemetry import tracing_enabled

logger = structlog.get_logger("pas.usage_publisher")

DropReason = Literal["buffer_full", "delivery_failed", "shutdown"]
DROP_REASONS: Final[tuple[DropReason, ...]] = ("buffer_full", "delivery_failed", "shutdown")

_BATCH = 256
_RETRY_INITIAL_S = 0.5
_RETRY_MAX_S = 30.0
_encode = msgspec.json.Encoder().encode

_Queued = tuple[UsageEvent, otel_context.Context | None]
"""An event and the trace context it was published in (``None`` with tracing off)."""


class UsagePublisherMetrics:
    """Counters of one publisher; the owning service adds ``collectors`` to its /metrics."""

    def __init__(self, service: str) -> None:
        self._published = Counter(
            "pas_usage_events_published",
            "Usage events the broker acknowledged",
            ["service"],
            registry=None,
        )
        self._dropped = Counter(
            "pas_usage_events_dropped",
            "Usage events given up on: queue full, broker refused, or pending at shutdown",
            ["service", "reason"],
            registry=None,
        )
        self._buffered = Gauge(
            "pas_usage_events_buffered",
            "Usage events waiting to be handed to the producer",
            ["service"],
            registry=None,
        )
        self.published = self._published.labels(service)
        # Every reason shows from the start (as 0), so that dashboards and alerts see it.
        self.dropped = {reason: self._dropped.labels(service, reason) for reason in DROP_REASONS}
        self.buffered = self._buffered.labels(service)

    @property
    def collectors(self) -> list[Collector]:
        return [self._published, self._dropped, self._buffered]


class UsagePublisher:
    """A bounded, never-blocking queue of usage events drained into one Kafka producer."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        service: str,
        topic: str = TOPIC_LLM_USAGE,
        max_buffered: int = 10_000,
        shutdown_timeout_s: float = 5.0,
        metrics: UsagePublisherMetrics | None = None,
    ) -> None:
        if max_buffered < 1:
            raise ValueError("max_buffered must be at least 1")
        self.service = service
        self.topic = topic
        self._bootstrap_servers = bootstrap_servers
        self._shutdown_timeout_s = shutdown_timeout_s
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(max_buffered)
        self.metrics = metrics or UsagePublisherMetrics(service)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._closing = False
        self.connected = asyncio.Event()

    @property
    def collectors(self) -> list[Collector]:
        return self.metrics.collectors

    def publish(self, event: UsageEvent) -> bool:
        """Queue the event for sending; False (and counted) when the queue is full."""
        # The context of the call that made the event: the send happens in another task.
        context = otel_context.get_current() if tracing_enabled() else None
        try:
            self._queue.put_nowait((event, context))
        except asyncio.QueueFull:
            self.metrics.dropped["buffer_full"].inc()
            return False
        self.metrics.buffered.set(self._queue.qsize())
        return True

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Connect and drain in the background; returns at once, even with the broker away."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"usage-publisher-{self.service}")

    async def stop(self) -> None:
        """Send what is queued (bounded by the shutdown timeout), then close the producer."""
        if self._task is None:
            return
        if not self._queue.empty() or self._in_flight:
            # Give queued events the shutdown timeout to reach the broker: to connect if the
            # publisher has not yet, to hand everything to the producer, and to be acknowledged.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._shutdown_timeout_s):
                    await self.connected.wait()
                    await self._queue.join()
                    if self._in_flight:
                        await asyncio.wait(set(self._in_flight))
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        unsent = self._queue.qsize()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._shutdown_timeout_s):
                    await self._producer.stop()
            self._producer = None
        unsent += len(self._in_flight)
        self._in_flight.clear()
        if unsent:
            self.metrics.dropped["shutdown"].inc(unsent)
            logger.warning(
                "usage events not sent before shutdown", service=self.service, dropped=unsent
            )
        self.connected.clear()

    async def _run(self) -> None:
        producer = await self._connect()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                for event, context in batch:
                    await self._send(producer, event, context)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self.metrics.buffered.set(self._queue.qsize())

    async def _send(
        self,
        producer: AIOKafkaProducer,
        event: UsageEvent,
        context: otel_context.Context | None,
    ) -> None:
        try:
            # Waits only while the producer's own buffer is full; requests never wait on this.
            if context is None:
                delivery = await producer.send(self.topic, value=_encode(event))
            else:
                # The span covers the hand-over to the producer, not the broker's answer
                # (which _delivered counts): the publisher never waits on that.
                with produce_span(self.topic, context=context) as headers:
                    delivery = await producer.send(
                        self.topic, value=_encode(event), headers=headers
                    )
        except KafkaError as exc:
            self.metrics.dropped["delivery_failed"].inc()
            logger.warning("usage event not accepted by the producer", error=str(exc))
            return
        self._in_flight.add(delivery)
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        if delivery not in self._in_flight:
            return  # given up on, and counted, at shutdown
        self._in_flight.discard(delivery)
        if delivery.cancelled():
            self.metrics.dropped["shutdown" if self._closing else "delivery_failed"].inc()
            return
        if delivery.exception() is not None:
            self.metrics.dropped["delivery_failed"].inc()
            return
        self.metrics.published.inc()

    async def _connect(self) -> AIOKafkaProducer:
        delay = _RETRY_INITIAL_S
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap_servers, linger_ms=20, acks="all"
            )
            try:
                await producer.start()
            except KafkaError as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                logger.warning(
                    "usage publisher cannot reach the broker; events queue meanwhile",
                    service=self.service,
                    broker=self._bootstrap_servers,
                    error=str(exc),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            self._producer = producer
            self.connected.set()
            logger.info("usage publisher connected", service=self.service, topic=self.topic)
            return producer
