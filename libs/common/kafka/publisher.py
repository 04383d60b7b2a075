"""Many records published with the broker's acknowledgement, at a fraction of a send's cost.

``send_acknowledged`` goes through aiokafka's ``send``: a future, the partitioner and a record
appended to its partition's open batch, then a deadline and a retry wrapper around the wait,
about 25 µs a record, which a worker publishing one result a message (the Kafka LLM processor)
pays on every document. ``BatchPublisher.publish`` puts the record in its partition's queue and
returns once the broker acknowledged it, as ``send_acknowledged`` does; one flusher a partition
builds what is queued into a batch of aiokafka's batch API (``create_batch``/``send_batch``)
and hands it to the producer. While a partition's batch is on its way, the next one fills: a
record waits as long as with aiokafka's own batching, which also sends a partition one batch
at a time.

What a caller can count on is ``send_acknowledged``'s (``libs/common/kafka/records.py``): the
fast path only hands records over in batches. When a batch fails (aiokafka has retried it within
its request timeout) or cannot be handed over, each of its records is sent alone through
``send_acknowledged`` with what remains of its deadline: retried while the error is retriable,
``PublishFailed`` when it is not or the deadline passed, ``ProducerClosed`` as it is. A record
too large to share a batch, and a topic whose partitions the producer does not know yet, go
that way from the start. Records of a partition are handed over in the order they were
published, except around one sent alone (the first to a topic the producer has not learned
yet, or one that failed in a batch), as retries of ``send`` may reorder them too. Call ``close()``
before the producer's ``stop()``: it hands over what is queued and waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from functools import partial

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerClosed

from libs.common.kafka.partitioner import kafka_partition
from libs.common.kafka.records import PUBLISH_DEADLINE_S, send_acknowledged

logger = structlog.get_logger("pas.kafka")

Headers = list[tuple[str, bytes]]

LONE_RECORD_FRACTION = 4
"""A record over this fraction of the producer's batch size is sent alone: a batch then holds
a few at least, and one the broker refuses for its size takes no others down with it."""


@dataclass(slots=True)
class _Queued:
    key: bytes | None
    value: bytes
    headers: Headers
    acknowledged: asyncio.Future[None]
    since: float
    """``time.monotonic()`` when it was published: its deadline counts from then."""


class BatchPublisher:
    """Publishes through one started producer (see the module)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        batch_bytes: int,
        deadline_s: float = PUBLISH_DEADLINE_S,
    ) -> None:
        """``batch_bytes``: the producer's ``max_batch_size``."""
        self._producer = producer
        self._deadline_s = deadline_s
        self._lone_bytes = batch_bytes // LONE_RECORD_FRACTION
        self._queues: dict[TopicPartition, list[_Queued]] = {}
        self._partitions: dict[str, list[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._batches: set[asyncio.Future[object]] = set()
        """Batches handed over and not yet acknowledged."""
        self._closed = False

    def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers | None = None
    ) -> Awaitable[None]:
        """Completes once the broker acknowledged the record; raises ``PublishFailed`` (or
        ``ProducerClosed``) as ``send_acknowledged`` does. (What it hands back is the record's
        future itself, not a coroutine awaiting it: the acknowledgement of every record comes
        back through each coroutine between it and the publisher's caller.)"""
        if self._closed:
            raise ProducerClosed()
        partitions = self._partitions_of(topic)
        if partitions is None or len(value) + len(key or b"") > self._lone_bytes:
            return send_acknowledged(
                self._producer, topic, key, value, headers, deadline_s=self._deadline_s
            )
        tp = TopicPartition(topic, kafka_partition(key, partitions))
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = []
            self._start(self._flush(tp, queue))
        queue.append(_Queued(key, value, headers or [], acknowledged, time.monotonic()))
        return acknowledged

    async def close(self) -> None:
        """Hand over what is queued and wait until every record is acknowledged or failed."""
        self._closed = True
        while self._tasks or self._batches:
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            if self._batches:
                await asyncio.wait(set(self._batches))

    def _partitions_of(self, topic: str) -> list[int] | None:
        known = self._producer.client.cluster.partitions_for_topic(topic)
        if not known:
            return None
        cached = self._partitions.get(topic)
        if cached is None or len(cached) != len(known):
            cached = self._partitions[topic] = sorted(known)
        return cached

    def _start(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _flush(self, tp: TopicPartition, queue: list[_Queued]) -> None:
        """Hands the partition's queue over, batch after batch, until it stays empty."""
        try:
            while queue:
                taken = queue[:]
                queue.clear()
                try:
                    await self._hand_over(tp, taken)
                except Exception as exc:
                    # aiokafka's batch would not take a record (not bytes): each still waiting
                    # goes alone, and what was wrong reaches its publisher. Those of a batch
                    # already handed over may then be published twice: at least once.
                    self._alone(tp.topic, taken, exc)
        finally:
            del self._queues[tp]
            # Left only when the flusher was cancelled: nothing may be left waiting.
            self._alone(tp.topic, queue, None)

    async def _hand_over(self, tp: TopicPartition, records: list[_Queued]) -> None:
        start = 0
        while start < len(records):
            builder = self._producer.create_batch()
            end = start
            for queued in records[start:]:
                if (
                    builder.append(
                        timestamp=None, key=queued.key, value=queued.value, headers=queued.headers
                    )
                    is None
                ):
                    break
                end += 1
            # A batch always takes its first record, so each round hands at least one over.
            batch = records[start:end]
            start = end
            builder.close()  # else aiokafka's own send() could add to it
            try:
                sent = await self._producer.send_batch(builder, tp.topic, partition=tp.partition)
            except Exception as exc:
                self._alone(tp.topic, batch, exc)
            else:
                self._batches.add(sent)
                sent.add_done_callback(partial(self._delivered, tp.topic, batch))

    def _delivered(self, topic: str, batch: list[_Queued], sent: asyncio.Future[object]) -> None:
        self._batches.discard(sent)
        failure = ProducerClosed() if sent.cancelled() else sent.exception()
        if failure is not None:
            self._alone(topic, batch, failure)
            return
        for queued in batch:
            if not queued.acknowledged.done():
                queued.acknowledged.set_result(None)

    def _alone(self, topic: str, records: list[_Queued], cause: BaseException | None) -> None:
        """Each of ``records`` that is still waiting is sent alone (see the module)."""
        if cause is not None and not isinstance(cause, ProducerClosed):
            logger.warning(
                "a batch was not acknowledged; its records are sent again one by one",
                topic=topic,
                records=len(records),
                error=f"{type(cause).__name__}: {cause}",
            )
        for queued in records:
            if queued.acknowledged.done():
                continue  # its publisher stopped waiting
            if isinstance(cause, ProducerClosed):
                queued.acknowledged.set_exception(ProducerClosed())
            else:
                alone = self._start(self._send_alone(topic, queued))
                # A publisher that stops waiting (cancelled) stops the send, as with
                # send_acknowledged: a stop is not held up for a record nobody waits for.
                queued.acknowledged.add_done_callback(partial(_stop_if_abandoned, alone))

    async def _send_alone(self, topic: str, queued: _Queued) -> None:
        try:
            await send_acknowledged(
                self._producer,
                topic,
                queued.key,
                queued.value,
                queued.headers or None,
                deadline_s=self._deadline_s,
                since=queued.since,
            )
        except Exception as exc:
            if not queued.acknowledged.done():
                queued.acknowledged.set_exception(exc)
        else:
            if not queued.acknowledged.done():
                queued.acknowledged.set_result(None)


def _stop_if_abandoned(send: asyncio.Task[None], acknowledged: asyncio.Future[None]) -> None:
    if acknowledged.cancelled():
        send.cancel()
