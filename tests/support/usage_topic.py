"""The usage events a test's services published on a topic of its own."""

from __future__ import annotations

import asyncio

import msgspec
from aiokafka import AIOKafkaConsumer

from libs.common.schemas.usage import UsageEvent


async def usage_events(bootstrap: str, topic: str, timeout_s: float = 30) -> list[UsageEvent]:
    """Every event on the topic, read until none has come for a second (or the timeout)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    events: list[UsageEvent] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch and events:
                break
            for records in batch.values():
                events += [msgspec.json.decode(r.value, type=UsageEvent) for r in records]
    finally:
        await consumer.stop()
    return events
