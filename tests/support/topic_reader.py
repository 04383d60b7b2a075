"""Read what a service published on a Kafka topic, from the topic's start."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

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
    """What ``decode`` makes of each record on ``topic``, read from the start in a consumer
    group of its own, until ``want`` came, or ``enough`` says so, or ``timeout_s`` passed."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[T] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (enough(found) if enough else len(found) >= want):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found.extend(map(decode, records))
    finally:
        await consumer.stop()
    return found
