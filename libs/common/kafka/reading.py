"""Reading partitions a consumer assigns itself (no group): a tool's, a test's, a bench's."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition


async def assign_settled(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> None:
    """Assign ``partitions`` to ``consumer`` and wait until each has its first position.

    aiokafka resets an assigned partition's position in the background, to where its
    ``auto_offset_reset`` says; a seek made before that reset has landed is overwritten by it
    (a ``seek_to_beginning`` read nothing of a DLQ, every other time). Seeks made after this
    returns stick."""
    consumer.assign(list(partitions))
    for tp in partitions:
        await consumer.position(tp)


def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` in the consumer's metadata (fetched by ``topics()``), in
    order; none when the topic does not exist."""
    numbers = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, n) for n in sorted(numbers)]
