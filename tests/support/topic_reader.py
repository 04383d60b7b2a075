"""Read what a service published on a Kafka topic, from the topic's start.

No consumer group: every partition assigned and read from the start. Joining a group of its
own cost each read about five seconds on the embedded broker, which holds a join for members
that may come."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from libs.common.kafka.reading import assign_settled, partitions_of

T = TypeVar("T")
Record: TypeAlias = ConsumerRecord[bytes, bytes]


@asynccontextmanager
async def _from_start(bootstrap: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # fetches every topic's metadata
        partitions = partitions_of(consumer, topic)
        assert partitions, f"topic {topic} does not exist"
        await assign_settled(consumer, partitions)
        await consumer.seek_to_beginning(*partitions)
        yield consumer
    finally:
        await consumer.stop()


async def read_from_start(
    bootstrap: str,
    topic: str,
    decode: Callable[[Record], T],
    *,
    want: int,
    timeout_s: float,
    enough: Callable[[list[T]], bool] | None = None,
) -> list[T]:
    """What ``decode`` makes of each record on ``topic``, read from the start, until ``want``
    came, or ``enough`` says so, or ``timeout_s`` passed."""
    found: list[T] = []
    async with _from_start(bootstrap, topic) as consumer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (enough(found) if enough else len(found) >= want):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found.extend(map(decode, records))
    return found


async def read_until_quiet(bootstrap: str, topic: str, *, quiet_ms: int = 1000) -> list[Record]:
    """Every record ``topic`` holds now: read from the start until a fetch waits ``quiet_ms``
    and finds nothing more."""
    found: list[Record] = []
    async with _from_start(bootstrap, topic) as consumer:
        while batches := await consumer.getmany(timeout_ms=quiet_ms):
            for records in batches.values():
                found += records
    return found
