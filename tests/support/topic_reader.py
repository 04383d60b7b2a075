"""Read what a service published on a Kafka topic, from the topic's start."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

T = TypeVar("T")


async def read_from_start(
    bootstrap: str,
    topic: str,
    decode: Callable[[ConsumerRecord[bytes, bytes]], T],
    *,
    want: int,
    timeout_s: float,
    enough: Callable[[list[T]], bool] | None = None,
) -> list[T]:
    """What ``decode`` makes of each record on ``topic``, read from the start, until ``want``
    came, or ``enough`` says so, or ``timeout_s`` passed."""
    # No consumer group: every partition assigned and read from the start. Joining a group of
    # its own cost each read about five seconds on the embedded broker, which holds a join for
    # members that may come. Reset to the earliest as well: aiokafka applies the first reset
    # of an assigned partition (the policy's) even when a seek_to_beginning came meanwhile.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[T] = []
    try:
        await consumer.topics()  # fetches every topic's metadata
        partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} does not exist"
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (enough(found) if enough else len(found) >= want):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found.extend(map(decode, records))
    finally:
        await consumer.stop()
    return found
