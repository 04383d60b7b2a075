"""What every PAS consumer does the same way: track its assignment, send with the broker's
acknowledgement, turn a record it cannot use into a dead letter, and start again when the
broker drops it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import stamina
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from libs.common.schemas.documents import DeadLetter

logger = structlog.get_logger("pas.kafka")

Settle = Callable[[set[TopicPartition]], Awaitable[None]]


class TrackAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps ``assigned`` current. Before partitions move to another consumer, ``settle``
    (when given) finishes their in-flight work and commits it."""

    def __init__(self, assigned: set[TopicPartition], settle: Settle | None = None) -> None:
        self._assigned = assigned
        self._settle = settle

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._settle is not None:
            await self._settle(set(revoked))
        self._assigned.difference_update(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned.update(assigned)
        logger.info(
            "partitions assigned",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
        )


async def send_acknowledged(
    producer: AIOKafkaProducer,
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]] | None = None,
) -> Any:
    """Send and wait until the broker acknowledges, retrying while it is away: a caller
    commits its input only after this returns, so nothing is lost in between."""
    async for attempt in stamina.retry_context(on=Exception, attempts=10, timeout=None):
        with attempt:
            return await (await producer.send(topic, key=key, value=value, headers=headers))
    return None


def dead_letter(
    record: ConsumerRecord[bytes, bytes], *, error: str, error_type: str, attempts: int
) -> DeadLetter:
    """The DLQ envelope of ``record``: the original bytes and headers, where it came from, and
    why it could not be used."""
    return DeadLetter(
        error=error[:2000],
        error_type=error_type,
        attempts=attempts,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode(errors="replace") if record.key else None,
        original=(record.value or b"").decode(errors="replace"),
        headers={k: v.decode(errors="replace") for k, v in record.headers},
        failed_at=datetime.now(UTC),
    )


class ConsumerLoop(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


async def run_until_stopped(loop: ConsumerLoop, stop: asyncio.Event, *, name: str) -> None:
    """Run ``loop`` until ``stop`` is set. If the broker is away or drops it, start it again
    after a pause that doubles up to 15 s, and starts over once a run ends cleanly."""
    delay = 0.5
    while not stop.is_set():
        try:
            await loop.run(stop)
        except Exception:
            logger.exception(f"{name} failed; restarting", retry_in_s=delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 15.0)
        else:
            delay = 0.5
